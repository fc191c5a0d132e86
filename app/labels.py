"""Words for values that code stores and pages show (enum values, kinds, outcomes), per language.

Pages never print a stored value itself: `label(vocabulary, value)` gives its translated name, so a
Chinese page cannot show "authorized" or "push". tests/unit/test_labels.py checks every value the
code can store has a label with a Chinese translation.
"""

from flask_babel import lazy_gettext as _l

from app.models import GrantStatus, SessionStatus
from app.wechat import events

VOCABULARIES = {
    "change_kind": {
        "authorized": _l("Connected"),
        "reauthorized": _l("Authorized again"),
        "updated": _l("Permissions changed"),
        "confirmed": _l("Confirmed, no change"),
        "needs_reauthorization": _l("Needs re-authorization"),
        "recovered": _l("Access restored"),
    },
    "change_source": {
        "redirect": _l("WeChat redirect"),
        "push": _l("WeChat push"),
        "sweep": _l("Token refresh"),
        "reconcile": _l("Reconciliation"),
        "staff": _l("Staff"),
    },
    "session_status": {
        SessionStatus.OPEN.value: _l("Open"),
        SessionStatus.COMPLETED.value: _l("Completed"),
        SessionStatus.EXPIRED.value: _l("Expired"),
        SessionStatus.FAILED.value: _l("Failed"),
        SessionStatus.MISMATCH.value: _l("Mismatch"),
    },
    "grant_status": {
        GrantStatus.ACTIVE.value: _l("Active"),
        GrantStatus.NEEDS_REAUTHORIZATION.value: _l("Needs re-authorization"),
        GrantStatus.REVOKED.value: _l("Revoked"),
        "partial": _l("Partially authorized"),
    },
    "failure_reason": {
        "wrong_account": _l("a different account was authorized"),
        "bound_to_other_merchant": _l("account belongs to another merchant"),
        "code_invalid": _l("WeChat refused the code"),
    },
    "event_outcome": {
        "pending": _l("Waiting"),
        "processing": _l("Processing"),
        "processed": _l("Processed"),
        "failed": _l("Failed"),
        "ignored": _l("Ignored"),
        "duplicate": _l("Duplicate"),
    },
    "delivery_status": {
        "pending": _l("Waiting"),
        "delivered": _l("Delivered"),
        "failed": _l("Failed"),
    },
    "info_type": {
        events.INFO_COMPONENT_VERIFY_TICKET: _l("Ticket"),
        events.INFO_AUTHORIZED: _l("New authorization"),
        events.INFO_UPDATE_AUTHORIZED: _l("Permissions updated"),
        events.INFO_UNAUTHORIZED: _l("Revoked"),
    },
    "relay_format": {
        "wechat-xml": _l("WeChat plaintext mode (XML)"),
        "json": _l("JSON, signed like the grant webhooks"),
    },
    "relay_mode": {
        "reply": _l("Passive reply"),
        "async": _l("Asynchronous, retried"),
    },
    "relay_delivery_status": {
        "delivered": _l("Delivered"),
        "late": _l("Late"),
        "failed": _l("Failed"),
        "dead": _l("Dead letter"),
        "pending": _l("Waiting"),
        "in_flight": _l("Sending"),
    },
    "relay_account_state": {
        "ok": _l("OK"),
        "errors": _l("Errors"),
        "waiting": _l("Waiting"),
        "dead": _l("Dead letters"),
    },
    "relay_scope": {
        "all": _l("All accounts"),
        "merchant": _l("One merchant's accounts"),
        "appid": _l("One account"),
    },
    "attention_reason": {
        "seeded": _l("demo data"),
        "not_authorized": _l("WeChat says the account is not authorized"),
        "refresh_token_invalid": _l("WeChat no longer accepts the refresh token"),
        "unauthorized": _l("revoked in WeChat"),
        "wrong_account": _l("a different account was authorized"),
        "bound_to_other_merchant": _l("account belongs to another merchant"),
    },
    # The keys of an attention item's details (app/services/authorization: open_attention).
    "attention_detail": {
        "reason": _l("Reason"),
        "owner_merchant_id": _l("Merchant holding the account"),
        "source": _l("Reported by"),
        "auth_time": _l("Authorized at WeChat"),
        "has_refresh_token": _l("WeChat lists a refresh token"),
        "event_time": _l("Revocation pushed at"),
    },
    # How an attention item was closed (attention.read_resolution).
    "attention_resolution": {
        "assigned": _l("Assigned to a merchant"),
        "adopted": _l("Adopted into a merchant"),
        "dismissed": _l("Dismissed"),
    },
    # Why a merchant's past authorization ended (the purge's reason).
    "ended_reason": {
        "unauthorized": _l("revoked in WeChat"),
        # Staff purge only once WeChat confirms the revocation (its push was lost).
        "staff_purge": _l("revoked in WeChat"),
        "deletion_requested": _l("deletion you requested"),
    },
    "job_outcome": {
        "running": _l("Running"),
        "ok": _l("OK"),
        "error": _l("Error"),
    },
    "alert_severity": {
        "critical": _l("Critical"),
        "warning": _l("Warning"),
    },
    "alert_event": {
        "opened": _l("Alert opened"),
        "reminder": _l("Reminder"),
        "resolved": _l("Alert resolved"),
        "test": _l("Test message"),
    },
    "alert_channel": {
        "wecom": _l("WeCom robot"),
        "email": _l("Email"),
        "webhook": _l("Callback (webhook)"),
    },
    "platform_status": {
        "active": _l("In service"),
        "retired": _l("Retired"),
    },
    "platform_release": {
        "testing": _l("Testing"),
        "released": _l("Released"),
    },
    "audit_actor": {
        "system": _l("System"),
    },
    "audit_target": {
        "api_key": _l("Access key (API)"),
        "attention_item": _l("Attention item"),
        "authorization_session": _l("Authorization session"),
        "authorizer": _l("Account"),
        "component": _l("Platform"),
        "inbox_event": _l("Event"),
        "invitation": _l("Invitation"),
        "merchant": _l("Merchant"),
        "platform": _l("Platform"),
        "provider": _l("Provider profile"),
        "relay_delivery": _l("Relay delivery"),
        "relay_route": _l("Relay route"),
        "staff_note": _l("Note"),
        "user": _l("User"),
        "user_session": _l("Sign-in session"),
    },
}


def label(vocabulary: str, value) -> str:
    """The translated name of a stored value; an unknown value is shown as is (never hidden)."""
    raw = getattr(value, "value", value)
    if raw is None:
        return "—"
    found = VOCABULARIES[vocabulary].get(str(raw))
    return str(found) if found is not None else str(raw)
