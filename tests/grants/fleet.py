"""Many authorized accounts at once: seeded in the sandbox's world and in the portal's custody.

Seeding goes straight into each side's database (consenting 10,000 times over HTTP would only
test the consent path again); every token refresh afterwards is real HTTP to the sandbox.
"""

import secrets

from sqlalchemy import insert, select

from app.models import Authorizer, AuthorizerToken, Grant, GrantStatus


def seed_sandbox(sandbox, count: int, *, exchanged: bool = True) -> list[tuple[str, str]]:
    """Authorize `count` new accounts to the platform in the sandbox; returns (appid, refresh)."""
    from app.sandbox import clock, runtime
    from app.sandbox.models import Account, Authorization, WechatUser, db

    rows = []
    with sandbox.app.app_context(), runtime.get().lock:
        admin = db.session.execute(select(WechatUser).limit(1)).scalar_one()
        now = clock.now()
        for _ in range(count):
            appid = "wx" + secrets.token_hex(8)
            refresh = "refreshtoken@@@" + secrets.token_urlsafe(32)
            account = Account(
                appid=appid, type="official_account", nick_name="批量" + appid[-4:],
                user_name="gh_" + appid[-12:], principal_name="测试公司", admin=admin,
            )  # fmt: skip
            db.session.add(account)
            db.session.add(
                Authorization(
                    account=account, status="active", permission_set_ids=[1, 2],
                    refresh_token=refresh, exchanged=exchanged, authorized_at=now, updated_at=now,
                )
            )  # fmt: skip
            rows.append((appid, refresh))
        db.session.commit()
    return rows


def seed_portal(session, rows, merchant_id: int) -> list[int]:
    """Put the accounts into the portal's custody with no access token yet (all due)."""
    ids = []
    for appid, _refresh in rows:
        authorizer = Authorizer(
            appid=appid, merchant_id=merchant_id, account_type="official_account"
        )
        session.add(authorizer)
        ids.append(authorizer)
    session.flush()
    session.execute(
        insert(Grant),
        [{"authorizer_id": a.id, "status": GrantStatus.ACTIVE, "set_ids": [1, 2], "func_info": []}
         for a in ids],
    )  # fmt: skip
    for authorizer, (_, refresh) in zip(ids, rows, strict=True):
        session.add(AuthorizerToken(authorizer_id=authorizer.id, refresh_token=refresh,
                                    consecutive_failures=0))  # fmt: skip
    session.commit()
    return [a.id for a in ids]


def sandbox_refresh_tokens(sandbox) -> dict[str, str]:
    """appid -> the refresh token WeChat (the sandbox) currently holds."""
    from app.sandbox.models import Authorization, db

    with sandbox.app.app_context():
        return {
            g.account.appid: g.refresh_token
            for g in db.session.execute(select(Authorization)).scalars()
        }
