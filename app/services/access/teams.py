"""Merchant teams: invite colleagues as administrator or viewer, resend or revoke invitations,
change a member's role or remove them; a merchant always keeps at least one administrator.

Every function takes the merchant id it acts within: an invitation or user of another merchant
is NotFound (the views answer 404, so existence does not leak).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import func, select, update

from app.extensions import db
from app.models import Invitation, Merchant, Role, User, utcnow
from app.models.user import MERCHANT_ROLES
from app.services import DomainError, accounts, audit
from app.services.access.links import public_url
from app.services.notify import mail

ROLE_NAMES = {
    Role.MERCHANT_ADMIN: ("管理员", "administrator"),
    Role.MERCHANT_VIEWER: ("只读成员", "viewer"),
}


class NotFound(DomainError):
    code = "not_found"


class LastAdmin(DomainError):
    code = "last_admin"


class InvalidRole(DomainError):
    code = "invalid_role"


@dataclass(frozen=True)
class SentInvitation:
    """What the creator sees: the link (always) and whether it also went by email."""

    invitation: Invitation
    link: str
    emailed: bool


def merchant_role(value: str | Role) -> Role:
    """A merchant role from a form value; InvalidRole for anything else (staff included)."""
    try:
        role = Role(value)
    except ValueError:
        raise InvalidRole(role=str(value)) from None
    if role not in MERCHANT_ROLES:
        raise InvalidRole(role=role.value)
    return role


def invitation_link(token: str) -> str:
    return public_url("auth.accept_invitation", token=token)


def invite(merchant: Merchant, email: str, role: str | Role, *, actor=None) -> SentInvitation:
    """Invite someone to a merchant; the link is emailed when mail is configured."""
    role = merchant_role(role)
    token = accounts.invite_admin(merchant, email, actor=actor, role=role, ttl_hours=_ttl_hours())
    invitation = db.session.scalar(
        select(Invitation).where(Invitation.token_hash == accounts.token_hash(token))
    )
    return _deliver(invitation, token, actor)


def _deliver(invitation: Invitation, token: str, actor) -> SentInvitation:
    link = invitation_link(token)
    role_zh, role_en = ROLE_NAMES[invitation.role]
    inviter = actor.name or actor.email if isinstance(actor, User) else None
    mail.send_template(
        [invitation.email],
        f"邀请您加入 {invitation.merchant.name} · Invitation to {invitation.merchant.name}",
        "invitation",
        link=link,
        merchant_name=invitation.merchant.name,
        provider=_provider(),
        role_zh=role_zh,
        role_en=role_en,
        inviter=f"{inviter} " if inviter else "",
        inviter_en=inviter or "Your service provider",
        ttl_hours=_ttl_hours(),
    )
    return SentInvitation(invitation, link, mail.enabled())


def pending_invitations(merchant_id: int) -> list[Invitation]:
    """Invitations not yet accepted or revoked (expired ones included, to resend)."""
    return list(
        db.session.scalars(
            select(Invitation)
            .where(
                Invitation.merchant_id == merchant_id,
                Invitation.accepted_at.is_(None),
                Invitation.revoked_at.is_(None),
            )
            .order_by(Invitation.created_at.desc(), Invitation.id.desc())
        )
    )


def members(merchant_id: int) -> list[User]:
    """The merchant's users, administrators first."""
    users = db.session.scalars(select(User).where(User.merchant_id == merchant_id))
    return sorted(users, key=lambda u: (u.role is not Role.MERCHANT_ADMIN, u.email))


def _pending(merchant_id: int, invitation_id: int) -> Invitation:
    invitation = db.session.get(Invitation, invitation_id)
    if (
        invitation is None
        or invitation.merchant_id != merchant_id
        or invitation.accepted_at is not None
        or invitation.revoked_at is not None
    ):
        raise NotFound()
    return invitation


def copy_link(merchant_id: int, invitation_id: int) -> str | None:
    """The link of a pending invitation (None for one created before links were kept)."""
    token = _pending(merchant_id, invitation_id).token_encrypted
    return invitation_link(token) if token else None


def sent_invitation(merchant_id: int, invitation_id: int) -> SentInvitation | None:
    """A pending invitation as just sent (for the page after the redirect), or None."""
    try:
        link = copy_link(merchant_id, invitation_id)
    except NotFound:
        return None
    if link is None:
        return None
    return SentInvitation(db.session.get(Invitation, invitation_id), link, mail.enabled())


def resend(merchant_id: int, invitation_id: int, *, actor=None) -> SentInvitation:
    """Send a pending invitation again with a fresh expiry (a new link if the old is not kept)."""
    invitation = _pending(merchant_id, invitation_id)
    token = invitation.token_encrypted
    if token is None:
        token = secrets.token_urlsafe(32)
        invitation.token_hash = accounts.token_hash(token)
        invitation.token_encrypted = token
    invitation.expires_at = utcnow() + timedelta(hours=_ttl_hours())
    audit.record("invitation.resent", actor=actor, merchant_id=merchant_id,
                 target_type="invitation", target_id=invitation.id)  # fmt: skip
    db.session.commit()
    return _deliver(invitation, token, actor)


def revoke(merchant_id: int, invitation_id: int, *, actor=None) -> None:
    """Withdraw a pending invitation: its link stops working."""
    invitation = _pending(merchant_id, invitation_id)
    invitation.revoked_at = utcnow()
    invitation.token_encrypted = None
    audit.record("invitation.revoked", actor=actor, merchant_id=merchant_id,
                 target_type="invitation", target_id=invitation.id)  # fmt: skip
    db.session.commit()


def change_role(merchant_id: int, user_id: int, role: str | Role, *, actor=None) -> User:
    """Make a member administrator or viewer; the last administrator stays one."""
    role = merchant_role(role)
    member = _member_locked(merchant_id, user_id)
    if member.role is role:
        db.session.rollback()
        return member
    if member.role is Role.MERCHANT_ADMIN:
        _keep_an_admin(merchant_id, member)
    previous = member.role
    member.role = role
    audit.record("user.role_changed", actor=actor, merchant_id=merchant_id, target_type="user",
                 target_id=member.id, before=previous.value, after=role.value)  # fmt: skip
    db.session.commit()
    return member


def remove(merchant_id: int, user_id: int, *, actor=None) -> None:
    """Remove a member from the merchant (their account is deleted; the audit keeps its email)."""
    member = _member_locked(merchant_id, user_id)
    if member.role is Role.MERCHANT_ADMIN:
        _keep_an_admin(merchant_id, member)
    audit.record("user.removed", actor=actor, merchant_id=merchant_id, target_type="user",
                 target_id=member.id, email=member.email)  # fmt: skip
    # Invitations keep their history without pointing at a deleted account.
    db.session.execute(
        update(Invitation).where(Invitation.invited_by_id == member.id).values(invited_by_id=None)
    )
    db.session.execute(
        update(Invitation)
        .where(Invitation.accepted_user_id == member.id)
        .values(accepted_user_id=None)
    )
    db.session.delete(member)
    db.session.commit()


def _member_locked(merchant_id: int, user_id: int) -> User:
    # Locking the merchant row serializes team changes, so two admins demoting each other
    # at once cannot leave the merchant without one (PostgreSQL; SQLite serializes writes).
    db.session.execute(
        select(Merchant.id).where(Merchant.id == merchant_id).with_for_update()
    ).first()
    member = db.session.get(User, user_id, populate_existing=True)
    if member is None or member.merchant_id != merchant_id:
        db.session.rollback()
        raise NotFound()
    return member


def _keep_an_admin(merchant_id: int, leaving: User) -> None:
    others = db.session.scalar(
        select(func.count(User.id)).where(
            User.merchant_id == merchant_id,
            User.role == Role.MERCHANT_ADMIN,
            User.disabled_at.is_(None),
            User.id != leaving.id,
        )
    )
    if not others:
        db.session.rollback()
        raise LastAdmin()


def _ttl_hours() -> int:
    return current_app.config["INVITATION_TTL_HOURS"]


def _provider() -> str:
    return current_app.config.get("PROVIDER_NAME") or "Grantdesk"
