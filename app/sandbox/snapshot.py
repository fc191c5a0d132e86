"""The whole world as JSON: what `GET /sandbox/api/state` and the dashboard show."""

from flask import current_app
from sqlalchemy import select

from app.sandbox import catalog, clock, faults, grants, messages, runtime, tokens, world
from app.sandbox.models import (
    Account,
    ApiCall,
    Authorization,
    Credential,
    CustomMessage,
    Delivery,
    WechatUser,
    db,
)
from app.wechat.events import parse_message


def _all(model, *order):
    return list(db.session.execute(select(model).order_by(*order or (model.id,))).scalars())


def account_json(account: Account) -> dict:
    """One account with its admin, foreign grants and seeded scenario."""
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
        "foreign_providers": len(account.foreign_grants),
        "exclusive_held_elsewhere": sorted(grants.held_elsewhere(account)),
        "offered_permission_set_ids": grants.offered_sets(account),
    }


def grant_json(grant: Authorization) -> dict:
    """Our platform's grant for one account."""
    return {
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


def user_messages(limit: int) -> list[Delivery]:
    """The most recent user messages, oldest first."""
    query = (
        select(Delivery)
        .filter(Delivery.info_type.startswith(messages.INFO_PREFIX))
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


def api_calls(today_only: bool = False) -> dict:
    """Calls per API name (all days unless `today_only`)."""
    counts: dict[str, int] = {}
    for row in _all(ApiCall):
        if not today_only or row.day == clock.beijing_day():
            counts[row.name] = counts.get(row.name, 0) + row.calls
    return counts


def state(delivery_limit: int = 200) -> dict:
    """Everything a test or the dashboard wants to know."""
    platform = tokens.platform()
    latest = tokens.latest_ticket()
    credentials = _all(Credential)
    return {
        "platform": {
            "appid": platform.appid,
            "event_url": platform.event_url,
            "message_url": platform.message_url,
            "initiating_domain": platform.initiating_domain,
            "ip_whitelist": list(current_app.config["SANDBOX_IP_WHITELIST"]),
            "permission_set_ids": platform.permission_set_ids,
            "permission_sets": [
                {
                    "id": i,
                    "name": catalog.name(i),
                    "name_en": catalog.name(i, "en"),
                    "exclusive": catalog.is_exclusive(i),
                }
                for i in platform.permission_set_ids
            ],
            "ticket_push_running": platform.ticket_push_running,
        },
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
        "accounts": [account_json(a) for a in _all(Account)],
        "authorizations": [grant_json(g) for g in _all(Authorization)],
        "credentials": [credential_json(c) for c in credentials],
        "deliveries": [delivery_json(d) for d in _all(Delivery)[-delivery_limit:]],
        "user_messages": [user_message_json(d) for d in user_messages(delivery_limit)],
        "custom_messages": [
            {
                "authorizer_appid": m.authorizer_appid,
                "touser": m.touser,
                "msgtype": m.msgtype,
                "content": m.content,
                "at": clock.iso(m.at),
            }
            for m in _all(CustomMessage)
        ],
        "faults": faults.snapshot(),
        "api_calls": api_calls(),
        "release_check": runtime.get().last_release_check,
    }
