"""Plain factory functions: make_<model>(**overrides) -> a committed row."""

import itertools
from datetime import timedelta

from app.extensions import db
from app.models import Merchant, Role, User, utcnow
from app.services import accounts

PASSWORD = "correct horse battery"
_seq = itertools.count(1)


def make_merchant(**overrides) -> Merchant:
    n = next(_seq)
    merchant = Merchant(**{"name": f"商户 Merchant {n}", **overrides})
    db.session.add(merchant)
    db.session.commit()
    return merchant


def make_user(role: Role, password: str = PASSWORD, **overrides) -> User:
    n = next(_seq)
    user = User(
        **{
            "email": f"user{n}@example.com",
            "name": f"User {n}",
            "password_hash": accounts.hash_password(password),
            "role": role,
            **overrides,
        }
    )
    db.session.add(user)
    db.session.commit()
    return user


def make_staff(**overrides) -> User:
    return make_user(Role.PROVIDER_STAFF, **overrides)


def make_merchant_admin(merchant: Merchant | None = None, **overrides) -> User:
    merchant = merchant or make_merchant()
    return make_user(Role.MERCHANT_ADMIN, merchant_id=merchant.id, **overrides)


def make_invitation(
    merchant: Merchant | None = None,
    email: str | None = None,
    expires_in: timedelta = timedelta(hours=72),
) -> str:
    merchant = merchant or make_merchant()
    token = accounts.invite_admin(
        merchant, email or f"invitee{next(_seq)}@example.com", ttl_hours=1
    )
    invitation = accounts.find_open_invitation(token)
    invitation.expires_at = utcnow() + expires_in
    db.session.commit()
    return token
