"""What happens on WeChat's side when a merchant consents, updates or revokes (§2.2, §4)."""

from sqlalchemy import select

from app.sandbox import catalog, clock, platforms, pushes, runtime, tokens, world
from app.sandbox.errors import ConsentError
from app.sandbox.models import Account, Authorization, Credential, Platform, WechatUser, db

PRE_AUTH_REFUSALS = {
    "invalid": "pre_auth_code is invalid",
    "expired": "pre_auth_code is expired",
    # WeChat: a pre_auth_code may be used once, and a scan counts as a use.
    "used": "pre_auth_code was already scanned or used; get a new one from the platform",
}
# What WeChat's page answers an account that is not on an unreleased platform's test list
# (reported by developers, 2019); the API side of the same rule is 61028.
UNRELEASED = (
    "此第三方平台处于待全网发布状态，请全网发布或将尝试授权的公众号或小程序添加到"
    "“授权测试公众号列表”后再试"
)
UNRELEASED_ERRCODE = 61028


def find_user(ref) -> WechatUser | None:
    """A WeChat user by id (int or digits) or exact name."""
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        return db.session.get(WechatUser, int(ref))
    return db.session.execute(select(WechatUser).filter_by(name=ref)).scalars().first()


def find_account(appid: str | None) -> Account | None:
    """An account by appid."""
    return db.session.execute(select(Account).filter_by(appid=appid or "")).scalar_one_or_none()


def offered_sets(
    account: Account, platform: Platform, category_ids: list[int] | None = None
) -> list[int]:
    """The platform's configured sets this account type can grant (narrowed by category_id_list)."""
    sets = [i for i in platform.permission_set_ids if catalog.applies(i, account.type)]
    narrowed = [i for i in sets if category_ids and i in category_ids]
    return narrowed or sets


def other_providers(account: Account, platform: Platform) -> list[tuple[str, list[int]]]:
    """(name, granted sets) of every provider other than `platform` the account is authorized
    to: other providers' platforms (seeded) and the world's other platforms."""
    providers = [(g.provider_name, g.permission_set_ids) for g in account.foreign_grants]
    for grant in tokens.active_authorizations(account):
        if grant.platform_id != platform.id:
            providers.append((platforms.display_name(grant.platform), grant.permission_set_ids))
    return providers


def held_elsewhere(account: Account, platform: Platform) -> dict[int, str]:
    """Exclusive set id -> the other provider currently holding it for this account."""
    held = {}
    for provider, set_ids in other_providers(account, platform):
        for set_id in set_ids:
            if catalog.is_exclusive(set_id):
                held[set_id] = provider
    return held


def at_provider_limit(account: Account, platform: Platform) -> bool:
    """Whether a *new* grant to `platform` would be the account's 16th provider (WeChat counts
    every platform the account is authorized to)."""
    if tokens.active_authorization(account, platform.id) is not None:
        return False
    return len(other_providers(account, platform)) >= world.PROVIDER_LIMIT


def check_release(account: Account, platform: Platform) -> None:
    """An unreleased platform may be authorized only by the accounts on its test list."""
    if not platforms.may_authorize(platform, account):
        raise ConsentError("not_test_account", UNRELEASED, errcode=UNRELEASED_ERRCODE)


def check_account_allowed(account: Account, auth_type: int | None, biz_appid: str | None) -> None:
    """Enforce auth_type (1 OA, 2 MP, 3 both) and biz_appid on the phone page."""
    if biz_appid and account.appid != biz_appid:
        raise ConsentError("biz_appid_mismatch", "account is not the one the link was made for")
    if not biz_appid and auth_type in (1, 2):
        wanted = "official_account" if auth_type == 1 else "mini_program"
        if account.type != wanted:
            raise ConsentError("auth_type_mismatch", "the link does not allow this account type")
    if account.account_status != 1:
        raise ConsentError("account_unavailable", "account is not in a normal state")


def _check_sets(account: Account, platform: Platform, set_ids: list[int]) -> list[int]:
    set_ids = sorted(set(set_ids))
    if not set_ids:
        raise ConsentError("no_sets", "choose at least one permission set")
    offered = set(offered_sets(account, platform))
    unknown = [i for i in set_ids if i not in offered]
    if unknown:
        raise ConsentError("unknown_sets", f"sets not offered by the platform: {unknown}")
    held = held_elsewhere(account, platform)
    clash = [i for i in set_ids if i in held]
    if clash:
        raise ConsentError("exclusive_held", f"exclusive sets held by another platform: {clash}")
    return set_ids


def consent(
    pre_auth_code: str,
    user_ref,
    appid: str,
    set_ids: list[int],
    redirect_uri: str | None = None,
    auth_type: int | None = None,
    biz_appid: str | None = None,
    platform: Platform | None = None,
) -> dict:
    """The admin confirms on the phone: grant, push the event, return the redirect.

    The pre_auth_code names its platform; `platform`, when given, must be that one."""
    user, account = find_user(user_ref), find_account(appid)
    try:
        code = tokens.check_pre_auth_code(
            pre_auth_code,
            platform_id=platform.id if platform else None,
            wechat_user_id=user.id if user else None,
        )
    except tokens.PreAuthCodeRefused as refused:
        raise ConsentError("pre_auth_code_invalid", PRE_AUTH_REFUSALS[refused.reason]) from None
    platform = db.session.get(Platform, code.platform_id)
    if user is None:
        raise ConsentError("unknown_user", "no such WeChat user")
    tokens.scan_pre_auth_code(code, wechat_user_id=user.id)
    if account is None or account.admin_id != user.id:
        raise ConsentError("not_admin", "this WeChat user does not administer that account")
    check_account_allowed(account, auth_type, biz_appid)
    check_release(account, platform)
    set_ids = _check_sets(account, platform, set_ids)
    if at_provider_limit(account, platform):
        raise ConsentError("provider_limit", "account is already authorized to 15 platforms")
    code.used_at = clock.now()
    grant, info_type = _grant(account, platform, set_ids)
    auth_code = tokens.issue_auth_code(account, platform.id, code.value)
    if info_type:
        _push_grant_event(platform, info_type, account, auth_code)
    target = redirect_uri or code.redirect_uri
    return {
        "redirect_url": with_code(target, auth_code.value) if target else None,
        "auth_code": auth_code.value,
        "expires_in": tokens.AUTH_CODE_TTL,
        "info_type": info_type,
        "authorizer_appid": account.appid,
        "component_appid": platform.appid,
    }


def _grant(
    account: Account, platform: Platform, set_ids: list[int]
) -> tuple[Authorization, str | None]:
    """Create or renew the (platform, account) grant; a re-authorization gets a new refresh
    token."""
    at = clock.now()
    grant = db.session.execute(
        select(Authorization).filter_by(platform_id=platform.id, account_id=account.id)
    ).scalar_one_or_none()
    if grant is None or grant.status != "active":
        if grant is None:
            grant = Authorization(platform=platform, account=account, refresh_token="")
            db.session.add(grant)
        grant.status, grant.revoked_at, grant.authorized_at = "active", None, at
        grant.previous_refresh_token = grant.previous_refresh_until = None
        grant.refresh_token, grant.exchanged = world.new_refresh_token(), False
        grant.permission_set_ids, grant.updated_at = set_ids, at
        return grant, "authorized"
    changed = sorted(grant.permission_set_ids) != set_ids
    tokens.rotate_refresh_token(grant, world.new_refresh_token(), transition=True)
    grant.permission_set_ids, grant.updated_at = set_ids, at
    # WeChat sends no updateauthorized when the sets did not change (reference §2.2).
    return grant, "updateauthorized" if changed else None


def _push_grant_event(
    platform: Platform, info_type: str, account: Account, auth_code: Credential
) -> None:
    pushes.queue_event(
        platform,
        info_type,
        {
            "AuthorizerAppid": account.appid,
            "AuthorizationCode": auth_code.value,
            "AuthorizationCodeExpiredTime": int(auth_code.expires_at),
            "PreAuthCode": auth_code.origin or "",
        },
        account.appid,
    )


def with_code(redirect_uri: str, auth_code: str) -> str:
    """Append auth_code and expires_in to redirect_uri, keeping its query and fragment."""
    from urllib.parse import urlencode, urlsplit, urlunsplit

    parts = urlsplit(redirect_uri)
    extra = urlencode({"auth_code": auth_code, "expires_in": tokens.AUTH_CODE_TTL})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))


def update(platform: Platform, appid: str, set_ids: list[int]) -> dict:
    """Security assistant 'update authorization': change the sets of the account's grant to
    `platform`, push updateauthorized."""
    account = find_account(appid)
    grant = tokens.active_authorization(account, platform.id)
    if grant is None:
        raise ConsentError("not_authorized", "account is not authorized to this platform")
    set_ids = _check_sets(account, platform, set_ids)
    result = {
        "changed": False,
        "authorizer_appid": appid,
        "component_appid": platform.appid,
        "permission_set_ids": set_ids,
    }
    if sorted(grant.permission_set_ids) == set_ids:
        return result
    grant.permission_set_ids, grant.updated_at = set_ids, clock.now()
    auth_code = tokens.issue_auth_code(account, platform.id, None)
    _push_grant_event(platform, "updateauthorized", account, auth_code)
    return {**result, "changed": True, "auth_code": auth_code.value}


def revoke(platform: Platform, appid: str) -> dict:
    """The merchant revokes the account's grant to `platform`: its refresh token and tokens
    die, `unauthorized` is pushed; grants to other platforms are untouched."""
    account = find_account(appid)
    grant = tokens.active_authorization(account, platform.id)
    if grant is None:
        raise ConsentError("not_authorized", "account is not authorized to this platform")
    grant.status, grant.revoked_at = "revoked", clock.now()
    grant.previous_refresh_token = grant.previous_refresh_until = None
    tokens.kill_account_tokens(account, platform.id)
    pushes.queue_event(platform, "unauthorized", {"AuthorizerAppid": appid}, appid)
    return {"revoked": True, "authorizer_appid": appid, "component_appid": platform.appid}


def push_ticket(platform: Platform | None = None, *, scheduled: bool = False) -> str | None:
    """Mint and push a component_verify_ticket to the platform's (None: the default one's) event
    URL; scheduled pushes honour the platform's pause fault."""
    platform = platform or platforms.default()
    paused = runtime.get().pushes_of(platform.appid).get("pause_tickets")
    if scheduled and (paused or not platform.ticket_push_running):
        return None
    ticket = tokens.issue_ticket(platform.id)
    pushes.queue_event(platform, "component_verify_ticket", {"ComponentVerifyTicket": ticket.value})
    return ticket.value
