"""The whole world as JSON: what `GET /sandbox/api/state` and the dashboard show.

The state is seen from one platform (the default one unless `component_appid` names another):
`platform`, `ticket`, `authorizations`, `credentials`, `deliveries`, `user_messages`,
`custom_messages`, `faults`, `api_calls` and `release_check` are that platform's, and the
accounts' provider counts, exclusive sets and offer are as that platform sees them. `platforms`
lists every platform."""

from sqlalchemy import select

from app.sandbox import clock, faults, grants, messages, platforms, runtime, tokens, world
from app.sandbox.models import (
    Account,
    ApiCall,
    Authorization,
    Credential,
    CustomMessage,
    Delivery,
    Platform,
    WechatUser,
    db,
)
from app.wechat.events import parse_message


def _all(model, *order, **filters):
    query = select(model).filter_by(**filters).order_by(*order or (model.id,))
    return list(db.session.execute(query).scalars())


def account_json(account: Account, platform: Platform) -> dict:
    """One account with its admin, other providers and seeded scenario, seen from `platform`."""
    return {
        "appid": account.appid,
        "type": account.type,
        "nick_name": account.nick_name,
        "user_name": account.user_name,
        "principal_name": account.principal_name,
        "admin": account.admin_id,
        "service_type": account.service_type,
        "verify_type": account.verify_type,
        "release_test": account.release_test,
        "scenario": world.scenario(account),
        "foreign_providers": len(grants.other_providers(account, platform)),
        "exclusive_held_elsewhere": sorted(grants.held_elsewhere(account, platform)),
        "offered_permission_set_ids": grants.offered_sets(account, platform),
        "may_authorize": platforms.may_authorize(platform, account),
        "authorized_platforms": [g.platform.appid for g in tokens.active_authorizations(account)],
    }


def grant_json(grant: Authorization) -> dict:
    """One platform's grant for one account."""
    return {
        "component_appid": grant.platform.appid,
        "authorizer_appid": grant.account.appid,
        "status": grant.status,
        "permission_set_ids": grant.permission_set_ids,
        "refresh_token": grant.refresh_token,
        "exchanged": grant.exchanged,
        "authorized_at": clock.iso(grant.authorized_at),
        "updated_at": clock.iso(grant.updated_at),
        "revoked_at": clock.iso(grant.revoked_at),
    }


def delivery_json(delivery: Delivery) -> dict:
    """One push with its attempts."""
    return {
        "id": delivery.id,
        "component_appid": delivery_platform(delivery),
        "info_type": delivery.info_type,
        "authorizer_appid": delivery.authorizer_appid,
        "url": delivery.url,
        "status": delivery.status,
        "created_at": clock.iso(delivery.created_at),
        "duplicate_of": delivery.duplicate_of,
        "inner_xml": delivery.inner_xml,
        "openid": delivery.openid,
        "msg_id": delivery.msg_id,
        "reply_xml": delivery.reply_xml,
        "attempts": [
            {
                "number": a.number,
                "at": clock.iso(a.at),
                "http_status": a.http_status,
                "reply": a.reply,
                "error": a.error,
                "elapsed_ms": a.elapsed_ms,
            }
            for a in delivery.attempts
        ],
    }


def user_message_json(delivery: Delivery) -> dict:
    """One user message with what the platform answered (the dashboard's conversation)."""
    sent = parse_message(delivery.inner_xml)
    last = delivery.attempts[-1] if delivery.attempts else None
    reply = parse_message(delivery.reply_xml) if delivery.reply_xml else None
    if reply is not None:
        answer = "reply"
    elif delivery.status == "delivered":
        answer = "success" if last.reply == "success" else "empty"
    else:
        answer = delivery.status  # pending | failed
    return {
        "id": delivery.id,
        "authorizer_appid": delivery.authorizer_appid,
        "openid": delivery.openid,
        "msg_id": delivery.msg_id,
        "msg_type": sent.msg_type,
        "content": sent.fields.get("Content"),
        "event": sent.fields.get("Event"),
        "event_key": sent.fields.get("EventKey"),
        "duplicate_of": delivery.duplicate_of,
        "at": clock.iso(delivery.created_at),
        "attempts": len(delivery.attempts),
        "answer": answer,  # reply | success | empty | failed | pending
        "reply_type": reply.msg_type if reply else None,
        "reply_content": reply.fields.get("Content") if reply else None,
        # The answered attempt's time (an HTTP 200), as the user-message API reports it.
        "reply_ms": last.elapsed_ms if last and last.http_status == 200 else None,
        "error": last.error if last else None,
    }


def delivery_platform(delivery: Delivery) -> str | None:
    """The component appid a delivery was made for."""
    platform = db.session.get(Platform, delivery.platform_id)
    return platform.appid if platform else None


def user_messages(platform_id: int, limit: int) -> list[Delivery]:
    """The platform's most recent user messages, oldest first."""
    query = (
        select(Delivery)
        .filter(
            Delivery.platform_id == platform_id,
            Delivery.info_type.startswith(messages.INFO_PREFIX),
        )
        .order_by(Delivery.id.desc())
        .limit(limit)
    )
    return list(db.session.execute(query).scalars())[::-1]


def credential_json(credential: Credential) -> dict:
    """A token or code with its lifetime and state."""
    now = clock.now()
    alive = (
        not credential.killed
        and credential.used_at is None
        and now < credential.expires_at
        and (credential.superseded_until is None or now < credential.superseded_until)
    )
    return {
        "kind": credential.kind,
        "value": credential.value,
        "alive": alive,
        "issued_at": clock.iso(credential.issued_at),
        "expires_at": clock.iso(credential.expires_at),
        "superseded_until": clock.iso(credential.superseded_until),
        "used_at": clock.iso(credential.used_at),
        "scanned_at": clock.iso(credential.scanned_at),
        "scanned_by": credential.scanned_by,
        "authorizer_appid": credential.account.appid if credential.account else None,
    }


def api_calls(platform_id: int, today_only: bool = False) -> dict:
    """The platform's calls per API name (all days unless `today_only`)."""
    counts: dict[str, int] = {}
    for row in _all(ApiCall, platform_id=platform_id):
        if not today_only or row.day == clock.beijing_day():
            counts[row.name] = counts.get(row.name, 0) + row.calls
    return counts


def state(platform: Platform, delivery_limit: int = 200) -> dict:
    """Everything a test or the dashboard wants to know, seen from `platform`."""
    latest = tokens.latest_ticket(platform.id)
    described = platforms.platform_json(platform)
    return {
        "platform": {key: described[key] for key in PLATFORM_KEYS},
        "platforms": [platforms.platform_json(p) for p in platforms.all_platforms()],
        "clock": {
            "offset_seconds": runtime.get().clock_offset,
            "now": clock.now(),
            "iso": clock.iso(clock.now()),
        },
        "ticket": {"value": latest.value, "issued_at": clock.iso(latest.issued_at)}
        if latest
        else None,
        "wechat_users": [
            {
                "id": u.id,
                "name": u.name,
                "wechat_id": u.wechat_id,
                "accounts": [a.appid for a in u.accounts],
            }
            for u in _all(WechatUser)
        ],
        "accounts": [account_json(a, platform) for a in _all(Account)],
        "authorizations": [grant_json(g) for g in _all(Authorization, platform_id=platform.id)],
        "credentials": [credential_json(c) for c in _all(Credential, platform_id=platform.id)],
        "deliveries": [
            delivery_json(d) for d in _all(Delivery, platform_id=platform.id)[-delivery_limit:]
        ],
        "user_messages": [user_message_json(d) for d in user_messages(platform.id, delivery_limit)],
        "custom_messages": [
            {
                "authorizer_appid": m.authorizer_appid,
                "touser": m.touser,
                "msgtype": m.msgtype,
                "content": m.content,
                "at": clock.iso(m.at),
            }
            for m in _all(CustomMessage, platform_id=platform.id)
        ],
        "faults": faults.snapshot(platform.appid),
        "api_calls": api_calls(platform.id),
        "release_check": runtime.get().last_release_check.get(platform.appid),
    }


# What the single-platform `platform` key always showed (the `platforms[]` entries say more).
PLATFORM_KEYS = (
    "appid",
    "name",
    "event_url",
    "message_url",
    "initiating_domain",
    "ip_whitelist",
    "permission_set_ids",
    "permission_sets",
    "ticket_push_running",
    "release_state",
    "released_at",
    "test_accounts",
)


def all_authorizations() -> list[dict]:
    """Every platform's grants (the dashboard's table)."""
    return [grant_json(g) for g in _all(Authorization, Authorization.account_id, Authorization.id)]
