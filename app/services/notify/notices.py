"""Merchant notices: email a merchant's admins when an account needs re-authorization or was
revoked, with the link that fixes it. Each admin may opt out in their settings."""

from __future__ import annotations

from flask import current_app, url_for
from sqlalchemy import select

from app.extensions import db
from app.models import Role, User

NEEDS_REAUTHORIZATION = "needs_reauthorization"
REVOKED = "revoked"
SUBJECTS = {
    NEEDS_REAUTHORIZATION: "需要重新授权 / Re-authorization needed: {name}",
    # No name or AppID: subjects outlive the purge in the mail log, bodies do not.
    REVOKED: "账号授权已取消 / An account's authorization was revoked",
}


def recipients(merchant_id: int) -> list[str]:
    """The merchant's active administrators who did not opt out."""
    query = select(User.email).where(
        User.merchant_id == merchant_id,
        User.role == Role.MERCHANT_ADMIN,
        User.disabled_at.is_(None),
        User.account_notices.is_(True),
    )
    return list(db.session.scalars(query.order_by(User.id)))


def _link(endpoint: str, **values) -> str:
    base = current_app.config["PUBLIC_BASE_URL"].rstrip("/")
    with current_app.test_request_context(base_url=base):
        return url_for(endpoint, _external=True, **values)


def send_account_notice(
    event: str, *, merchant_id: int | None, appid: str, name: str | None, account_id: int | None
) -> int:
    """Email each opted-in admin of the merchant; returns how many messages were queued."""
    if merchant_id is None:
        return 0
    to = recipients(merchant_id)
    if not to:
        return 0
    from app.services.notify import mail  # issue #12's outbox

    if event == NEEDS_REAUTHORIZATION and account_id is not None:
        link = _link("merchant.update", account_id=account_id)
    else:
        link = _link("merchant.connect")
    context = {
        "event": event,
        "name": name or appid,
        "appid": appid,
        "link": link,
        "settings_link": _link("auth.settings"),
        "provider": current_app.config.get("PROVIDER_NAME") or "Grantdesk",
    }
    env = current_app.jinja_env
    text = env.get_template("email/account_notice.txt").render(**context)
    html = env.get_template("email/account_notice.html").render(**context)
    subject = SUBJECTS[event].format(name=context["name"])
    for address in to:  # one message each: admins do not see each other's addresses
        mail.send([address], subject, text, html)
    return len(to)


def set_account_notices(user: User, enabled: bool) -> None:
    """Opt a user in or out of merchant notices."""
    user.account_notices = enabled
    db.session.commit()
