"""WeChat's credential rules: tickets, component tokens, codes, authorizer tokens (§3.12)."""

import hashlib
import secrets

from sqlalchemy import bindparam, case, insert, select, update

from app.sandbox import clock
from app.sandbox.errors import WechatError
from app.sandbox.models import Account, Authorization, Credential, Ticket, db

TOKEN_TTL = 7200
OVERLAP = 300  # an old token keeps working 5 minutes after a refresh
TICKET_TTL = 12 * 3600
PRE_AUTH_TTL = 600
AUTH_CODE_TTL = 3600

# The statements every token refresh runs, built once (building and keying them per call costs
# more than running them).
_C = Credential.__table__.c
_TOKEN_BY_VALUE = select(
    _C.id, _C.kind, _C.killed, _C.expires_at, _C.superseded_until, _C.platform_id
).where(_C.value == bindparam("value"))
_PLATFORM_OF_CREDENTIAL = select(_C.platform_id).where(_C.value == bindparam("value"))
_GRACE = bindparam("grace")
_SUPERSEDE = (
    update(Credential.__table__)
    .where(
        _C.kind == bindparam("b_kind"),
        _C.platform_id == bindparam("b_platform_id"),
        _C.killed.is_(False),
        _C.superseded_until.is_(None),
    )
    .values(superseded_until=case((_C.expires_at < _GRACE, _C.expires_at), else_=_GRACE))
)
_SUPERSEDE_OF_ACCOUNT = _SUPERSEDE.where(_C.account_id == bindparam("b_account_id"))
_INSERT_CREDENTIAL = insert(Credential.__table__)


def platform_of_credential(value: str) -> int | None:
    """The platform a token or code belongs to (None if there is no such credential)."""
    return db.session.execute(_PLATFORM_OF_CREDENTIAL, {"value": value}).scalar()


def _token_value() -> str:
    # Real tokens look like "<digits>_<long url-safe string>".
    return f"{secrets.randbelow(90) + 10}_{secrets.token_urlsafe(72)}"


def issue_ticket(platform_id: int) -> Ticket:
    """Mint a new component_verify_ticket for a platform (it is then pushed)."""
    value = "ticket@@@" + secrets.token_urlsafe(48)
    ticket = Ticket(platform_id=platform_id, value=value, issued_at=clock.now())
    db.session.add(ticket)
    db.session.flush()
    return ticket


def check_ticket(value: str | None, platform_id: int) -> Ticket:
    """Accept a ticket pushed to this platform within 12 h: 61006 if unknown (or another
    platform's), 61005 if expired."""
    ticket = db.session.execute(select(Ticket).filter_by(value=value or "")).scalar_one_or_none()
    if ticket is None or ticket.platform_id != platform_id:
        raise WechatError(61006)
    if clock.now() >= ticket.issued_at + TICKET_TTL:
        raise WechatError(61005)
    return ticket


def latest_ticket(platform_id: int) -> Ticket | None:
    """The platform's most recently pushed ticket."""
    query = select(Ticket).filter_by(platform_id=platform_id).order_by(Ticket.id.desc()).limit(1)
    return db.session.execute(query).scalar()


def _issue(kind: str, ttl: int, platform_id: int, **fields) -> Credential:
    at = clock.now()
    prefix = {"pre_auth_code": "preauthcode@@@", "auth_code": "queryauthcode@@@"}.get(kind)
    value = prefix + secrets.token_urlsafe(48) if prefix else _token_value()
    credential = Credential(
        kind=kind,
        value=value,
        issued_at=at,
        expires_at=at + ttl,
        platform_id=platform_id,
        **fields,
    )
    db.session.add(credential)
    db.session.flush()
    return credential


def _supersede(kind: str, platform_id: int, account_id: int | None = None) -> None:
    """Give every live token of this kind (platform, account) a 5-minute grace, not 2 hours."""
    params = {
        "b_kind": kind,
        "b_platform_id": platform_id,
        "grace": clock.now() + OVERLAP,
        "b_account_id": account_id,
    }
    db.session.flush()  # a Core statement: ORM changes pending in this session go first
    db.session.execute(_SUPERSEDE if account_id is None else _SUPERSEDE_OF_ACCOUNT, params)


def issue_component_token(platform_id: int) -> Credential:
    """A new component_access_token; the platform's older ones keep working for the overlap."""
    _supersede("component_token", platform_id)
    return _issue("component_token", TOKEN_TTL, platform_id)


def foreign_refresh(platform_id: int) -> Credential:
    """Another environment refreshed: every token of the platform we handed out dies now."""
    query = select(Credential).filter_by(kind="component_token", platform_id=platform_id)
    for old in db.session.execute(query).scalars():
        old.killed = True
    return _issue("component_token", TOKEN_TTL, platform_id)


def _check_token(kind: str, value: str | None):
    if not value:
        raise WechatError(41001)
    token = db.session.execute(_TOKEN_BY_VALUE, {"value": value}).first()
    if token is None or token.kind != kind or token.killed:
        raise WechatError(40001)
    at = clock.now()
    if at >= token.expires_at:
        raise WechatError(42001)
    if token.superseded_until is not None and at >= token.superseded_until:
        raise WechatError(40001)
    return token


def check_component_token(value: str | None, platform_id: int) -> None:
    """Validate a component_access_token of this platform: 41001 missing, 40001 unknown (or
    another platform's) or replaced, 42001 expired."""
    if _check_token("component_token", value).platform_id != platform_id:
        raise WechatError(40001)


def check_authorizer_token(value: str | None) -> Credential:
    """Validate an authorizer_access_token (same codes as the component token)."""
    return db.session.get(Credential, _check_token("authorizer_token", value).id)


def issue_pre_auth_code(platform_id: int) -> Credential:
    """A single-use pre_auth_code of a platform, living 600 s."""
    return _issue("pre_auth_code", PRE_AUTH_TTL, platform_id)


def check_pre_auth_code(
    value: str | None,
    *,
    platform_id: int | None = None,
    wechat_user_id: int | None = None,
    phone: str | None = None,
) -> Credential:
    """The pre_auth_code if it is this platform's (None = any) and this phone (a page's browser;
    None = the control API) and WeChat user may use it, else PreAuthCodeRefused ("invalid",
    "expired" or "used").

    WeChat burns a code when it is scanned (reference §3.2): once a phone opened the
    authorization page with it, only that phone goes on, and once a WeChat user is picked there,
    only that user. The control API stands in for the phone that scanned.
    """
    code = db.session.execute(
        select(Credential).filter_by(kind="pre_auth_code", value=value or "")
    ).scalar_one_or_none()
    if code is None or platform_id not in (None, code.platform_id):
        raise PreAuthCodeRefused("invalid")
    if clock.now() >= code.expires_at:
        raise PreAuthCodeRefused("expired")
    other_phone = phone is not None and code.scanner not in (None, _phone_ref(phone))
    other_user = wechat_user_id is not None and code.scanned_by not in (None, wechat_user_id)
    if code.used_at is not None or other_phone or other_user:
        raise PreAuthCodeRefused("used")
    return code


def scan_pre_auth_code(
    code: Credential, *, phone: str | None = None, wechat_user_id: int | None = None
) -> None:
    """The authorization page was opened with this code on a phone (and a user picked there):
    it is burned for every other phone and user."""
    if code.scanned_at is None:
        code.scanned_at = clock.now()
    if phone is not None and code.scanner is None:
        code.scanner = _phone_ref(phone)
    if wechat_user_id is not None and code.scanned_by is None:
        code.scanned_by = wechat_user_id


def _phone_ref(phone: str) -> str:
    return hashlib.sha256(phone.encode()).hexdigest()[:32]


class PreAuthCodeRefused(Exception):
    """Why a pre_auth_code cannot be used: "invalid", "expired" or "used"."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def issue_auth_code(account: Account, platform_id: int, pre_auth_code: str | None) -> Credential:
    """A single-use authorization_code of a platform's grant, living 3600 s."""
    return _issue("auth_code", AUTH_CODE_TTL, platform_id, account=account, origin=pre_auth_code)


def exchange_auth_code(value: str | None, platform_id: int) -> tuple[Authorization, str]:
    """api_query_auth: consume a code of this platform (61009 unknown, another platform's or
    used; 61010 expired), mint a token."""
    code = db.session.execute(
        select(Credential).filter_by(kind="auth_code", value=value or "")
    ).scalar_one_or_none()
    if code is None or code.used_at is not None or code.platform_id != platform_id:
        raise WechatError(61009)
    if clock.now() >= code.expires_at:
        raise WechatError(61010)
    grant = active_authorization(code.account, platform_id)
    if grant is None or code.issued_at < grant.authorized_at:
        raise WechatError(61009)
    code.used_at = clock.now()
    grant.exchanged = True
    return grant, issue_authorizer_token(platform_id, code.account_id, origin=code.value)


def issue_authorizer_token(platform_id: int, account_id: int, origin: str | None = None) -> str:
    """A new authorizer_access_token of a (platform, account) grant (its value); the previous
    one keeps the 5-minute overlap."""
    _supersede("authorizer_token", platform_id, account_id)
    at, value = clock.now(), _token_value()
    db.session.execute(
        _INSERT_CREDENTIAL,
        {"kind": "authorizer_token", "value": value, "issued_at": at, "expires_at": at + TOKEN_TTL,
         "killed": False, "account_id": account_id, "origin": origin, "platform_id": platform_id},
    )  # fmt: skip
    return value


def active_authorization(account: Account | None, platform_id: int) -> Authorization | None:
    """The account's live grant to this platform, if any."""
    if account is None:
        return None
    return db.session.execute(
        select(Authorization).filter_by(
            platform_id=platform_id, account_id=account.id, status="active"
        )
    ).scalar_one_or_none()


def active_authorizations(account: Account) -> list[Authorization]:
    """The account's live grants to any of the world's platforms."""
    query = select(Authorization).filter_by(account_id=account.id, status="active")
    return list(db.session.execute(query.order_by(Authorization.platform_id)).scalars())


def refresh_token_matches(grant: Authorization, value: str | None) -> bool:
    """The current refresh token, or the previous one within its 5-minute transition."""
    if value and secrets.compare_digest(grant.refresh_token, value):
        return True
    return bool(
        value
        and grant.previous_refresh_token
        and secrets.compare_digest(grant.previous_refresh_token, value)
        and clock.now() < (grant.previous_refresh_until or 0)
    )


def rotate_refresh_token(grant: Authorization, new_value: str, *, transition: bool) -> None:
    """Replace the refresh token; the old one lives 5 more minutes only on `transition`."""
    grant.previous_refresh_token = grant.refresh_token if transition else None
    grant.previous_refresh_until = clock.now() + OVERLAP if transition else None
    grant.refresh_token = new_value


def kill_account_tokens(account: Account, platform_id: int) -> None:
    """Revocation: the grant's authorizer tokens and unused codes stop working at once (the
    account's grants to other platforms keep theirs)."""
    query = select(Credential).filter(
        Credential.account_id == account.id,
        Credential.platform_id == platform_id,
        Credential.kind.in_(["authorizer_token", "auth_code"]),
    )
    for credential in db.session.execute(query).scalars():
        credential.killed = True
        if credential.kind == "auth_code" and credential.used_at is None:
            credential.used_at = clock.now()
