"""Staff roles: viewer reads, operator acts on accounts, admin manages users, keys and settings."""

import secrets

from sqlalchemy import func, select

from app.extensions import db
from app.models import Role, StaffRole, User
from app.services import DomainError, accounts, audit


class LastAdmin(DomainError):
    code = "last_admin"


class NotStaff(DomainError):
    code = "not_staff"


def has_role(user, role: StaffRole | str) -> bool:
    """Whether `user` is active staff whose role includes `role` (admin > operator > viewer)."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_staff:
        return False
    own = user.staff_role or StaffRole.VIEWER  # no role recorded: the least privilege
    return own.rank >= StaffRole(role).rank


def list_staff() -> list[User]:
    """Every staff user, administrators first."""
    users = db.session.scalars(select(User).where(User.role == Role.PROVIDER_STAFF)).all()
    return sorted(users, key=lambda u: (-(u.staff_role or StaffRole.VIEWER).rank, u.email))


def create_staff(email: str, name: str, role: StaffRole | str, actor: User) -> tuple[User, str]:
    """Create a staff user with a generated first password (shown once to the creating admin)."""
    password = secrets.token_urlsafe(12)
    user = accounts.create_staff_user(email, password, name, actor=actor, staff_role=role)
    return user, password


def change_role(user: User, role: StaffRole | str, actor: User) -> None:
    """Give a staff member another role; the last active administrator keeps theirs."""
    role = StaffRole(role)
    if not user.is_staff:
        raise NotStaff()
    if user.staff_role is StaffRole.ADMIN and role is not StaffRole.ADMIN:
        # Locking the admins' rows serializes two admins demoting each other at once.
        admins = db.session.scalars(
            select(User.id)
            .where(
                User.role == Role.PROVIDER_STAFF,
                User.staff_role == StaffRole.ADMIN,
                User.disabled_at.is_(None),
            )
            .with_for_update()
        ).all()
        if not set(admins) - {user.id}:
            db.session.rollback()
            raise LastAdmin()
    previous = user.staff_role
    user.staff_role = role
    audit.record(
        "user.staff_role_changed", actor=actor, target_type="user", target_id=user.id,
        previous=previous.value if previous else None, role=role.value,
    )  # fmt: skip
    db.session.commit()


def count_admins() -> int:
    """Active staff administrators."""
    return db.session.scalar(
        select(func.count(User.id)).where(
            User.role == Role.PROVIDER_STAFF,
            User.staff_role == StaffRole.ADMIN,
            User.disabled_at.is_(None),
        )
    )
