"""Updates (with and without changes), revocation purge, re-authorization after revocation."""

import subprocess

from sqlalchemy import func, select

from app.extensions import db
from app.models import (
    AuditEntry,
    AuthorizationSession,
    Authorizer,
    AuthorizerToken,
    GrantChange,
    InboxEvent,
    PreAuthCode,
    SessionStatus,
)
from app.models.grants import appid_ref
from app.services.authorization import authorizers, purge, sessions
from app.services.custody import sweep


def _connect(flow, account, sets=(1, 2)):
    session = flow.start(sets)
    result = flow.consent(flow.link(session), account, list(sets))
    flow.follow(result["redirect_url"])
    flow.sandbox.flush()
    return session


def _account(flow):
    return flow.sandbox.account(scenario="fresh", type="official_account")


def _update_session(flow, appid, sets):
    def run():
        authorizer = db.session.scalar(select(Authorizer).where(Authorizer.appid == appid))
        session = sessions.start_update_session(authorizer, sets)
        return {"id": session.id, "token": session.link_token, "public_id": session.public_id}

    return flow.portal.call(run)


def test_update_with_changes_records_the_diff(flow):
    account = _account(flow)
    _connect(flow, account, [1, 2])
    session = _update_session(flow, account["appid"], [1, 2, 3])
    assert authorizers.grant_badge(flow.authorizer(account["appid"])) == "update_pending"
    link = flow.link(session)
    assert link.biz_appid == account["appid"] and link.auth_type == 1
    assert link.category_id_list == (1, 2, 3)
    result = flow.consent(link, account, [1, 3])
    flow.sandbox.flush()
    flow.follow(result["redirect_url"])
    assert flow.sandbox.deliveries("updateauthorized")
    change = flow.changes(account["appid"])[-1]
    assert (change.kind, change.set_ids, change.added, change.removed) == (
        "updated", [1, 3], [3], [2],
    )  # fmt: skip
    authorizer = flow.authorizer(account["appid"])
    # Set 2 is required (REQUIRED_PERMISSION_SETS_OFFICIAL_ACCOUNT): no longer pending, but partial.
    assert authorizers.grant_badge(authorizer) == "partial"
    assert flow.session(session["id"]).status is SessionStatus.COMPLETED
    assert flow.calls("api_query_auth") == 2


def test_update_without_changes_is_confirmed_by_the_redirect(flow):
    account = _account(flow)
    _connect(flow, account, [1, 2])
    before = flow.calls("api_get_authorizer_info")
    session = _update_session(flow, account["appid"], [1, 2])
    result = flow.consent(flow.link(session), account, [1, 2])
    assert result["info_type"] is None  # WeChat sends no push when nothing changed
    flow.follow(result["redirect_url"])
    assert flow.session(session["id"]).status is SessionStatus.COMPLETED
    assert [c.kind for c in flow.changes(account["appid"])] == ["authorized", "confirmed"]
    assert flow.calls("api_get_authorizer_info") == before + 1


def test_update_in_wechat_security_assistant(flow):
    account = _account(flow)
    _connect(flow, account, [1, 2])
    flow.sandbox.update(account["appid"], [2, 7])
    flow.sandbox.flush()
    change = flow.changes(account["appid"])[-1]
    assert (change.kind, change.added, change.removed, change.source) == (
        "updated", [7], [1], "push",
    )  # fmt: skip


def _dump(app) -> str:
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    if url.startswith("sqlite"):
        db.session.commit()
        db.session.execute(db.text("PRAGMA wal_checkpoint(FULL)"))
        return "\n".join(db.session.connection().connection.driver_connection.iterdump())
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    return subprocess.run(
        ["pg_dump", "--data-only", dsn], capture_output=True, text=True, check=True
    ).stdout


def test_revocation_purges_everything(app, flow):
    account = _account(flow)
    _connect(flow, account, [1, 2])
    authorizer = flow.authorizer(account["appid"])
    secrets_ = [authorizer.token.refresh_token, authorizer.token.access_token]
    names = [authorizer.nick_name, authorizer.principal_name, authorizer.user_name]
    codes = [c["value"] for c in flow.sandbox.state()["credentials"] if c["kind"] in (
        "auth_code", "pre_auth_code")]  # fmt: skip
    assert all(secrets_ + names) and codes
    flow.sandbox.revoke(account["appid"])
    flow.sandbox.flush()
    assert flow.count(Authorizer) == 0 and flow.count(AuthorizerToken) == 0
    assert flow.count(GrantChange) == 0
    # Only the hashes of the session's pre_auth_codes stay (late pushes find their session).
    assert db.session.scalars(select(PreAuthCode.code)).all() == [None]
    dump = _dump(app)
    for value in secrets_ + names + codes + [account["appid"]]:
        assert value not in dump, value
    tombstone = db.session.scalar(
        select(AuditEntry).where(AuditEntry.action == "authorizer.purged")
    )
    assert tombstone.details["appid_hash"] == appid_ref(account["appid"])
    assert tombstone.details["reason"] == "unauthorized" and tombstone.details["authorized_at"]
    assert tombstone.merchant_id == flow.merchant.id
    assert db.session.scalar(select(func.count()).select_from(InboxEvent)) >= 2
    assert db.session.scalar(select(func.count()).select_from(AuthorizationSession)) == 1


def test_deletion_request_requires_revocation_first(flow):
    account = _account(flow)
    _connect(flow, account)

    def ask():
        authorizer = db.session.scalar(select(Authorizer))
        try:
            purge.request_deletion(authorizer)
        except purge.StillAuthorized:
            return "refused"
        return "purged"

    assert flow.portal.call(ask) == "refused"
    flow.sandbox.configure(event_url="http://127.0.0.1:9/wechat/events")  # the push is lost
    flow.sandbox.revoke(account["appid"])
    assert flow.portal.call(ask) == "purged"
    assert flow.count(Authorizer) == 0


def test_deletion_request_during_a_wechat_outage_deletes_nothing(flow):
    account = _account(flow)
    _connect(flow, account)
    flow.sandbox.set_faults(endpoints={"api_get_authorizer_info": {"errcode": -1, "times": 50}})

    def ask():
        try:
            purge.request_deletion(db.session.scalar(select(Authorizer)))
        except purge.CannotVerifyRevocation:
            return "refused"
        return "purged"

    assert flow.portal.call(ask) == "refused"
    assert flow.count(Authorizer) == 1


def test_reauthorization_after_revocation_uses_the_new_refresh_token(flow):
    account = _account(flow)
    _connect(flow, account)
    old = flow.authorizer(account["appid"]).token.refresh_token
    flow.sandbox.revoke(account["appid"])
    flow.sandbox.flush()
    _connect(flow, account, [1])
    authorizer = flow.authorizer(account["appid"])
    assert authorizer.token.refresh_token != old
    assert [c.kind for c in authorizer.grant.changes] == ["authorized"]
    # Make the access token due, then the sweep refreshes with the new refresh token.
    authorizer.token.access_expires_at = None
    db.session.commit()
    result = flow.portal.call(sweep.sweep_tokens)
    assert result.outcomes == {"refreshed": 1}
    assert flow.calls("api_authorizer_token") == 1
