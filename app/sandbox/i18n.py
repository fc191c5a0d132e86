"""A small zh/en dictionary for the sandbox pages (an emulator, so no Babel catalogs)."""

from flask import request

from app.sandbox.grants import UNRELEASED

TEXTS = {
    "wechat": ("微信", "WeChat"),
    "authorize_title": ("授权给第三方平台", "Authorize a third-party platform"),
    "scan_hint": ("请使用微信扫描二维码授权", "Scan the QR code with WeChat to authorize"),
    "scan_sub": (
        "公众号或小程序管理员扫码后，在手机上选择要授权的账号",
        "The account administrator scans, then picks the account on the phone",
    ),
    "continue_here": ("在此电脑上继续（演示）", "Continue on this computer (demo)"),
    "platform": ("第三方平台", "Third-party platform"),
    "expires": ("二维码有效期", "QR code valid for"),
    "minutes": ("分钟", "minutes"),
    "choose_user": ("模拟微信登录：选择微信用户", "Simulated WeChat sign-in: pick a WeChat user"),
    "choose_user_sub": (
        "真实环境中，这一步由扫码的微信号决定",
        "In real WeChat, the scanning phone decides this",
    ),
    "choose_account": ("选择要授权的账号", "Choose the account to authorize"),
    "no_accounts": ("你不是任何可授权账号的管理员", "You administer no account that can authorize"),
    "official_account": ("公众号", "Official Account"),
    "mini_program": ("小程序", "Mini Program"),
    "already_ours": ("已授权给该平台，可更新授权", "Already authorized here; you can update"),
    "limit_reached": (
        "已授权给15个第三方平台，无法再授权新的平台",
        "Already authorized to 15 platforms; no new platform allowed",
    ),
    "choose_sets": ("选择授权的权限集", "Choose the permission sets to grant"),
    "sets_sub": (
        "权限集授权后，该第三方平台可代你调用相关接口",
        "The platform may call these APIs on your behalf",
    ),
    "exclusive_held": (
        "互斥权限集，已授权给「{provider}」，同一时间只能授权给一个平台",
        "Exclusive set, held by “{provider}”; only one platform may hold it",
    ),
    "exclusive": ("互斥", "exclusive"),
    "confirm": ("授权", "Authorize"),
    "cancel": ("取消", "Cancel"),
    "back": ("返回", "Back"),
    "error_title": ("授权失败", "Authorization failed"),
    "referer_error": (
        "请确认授权入口页所在域名，与授权后回调页所在域名相同，并且，此两者都必须与申请第三方平台时"
        "填写的授权发起页域名相同。授权入口页所在域名：{referer}",
        "The entry page's domain and the callback's domain must both equal the "
        "platform's authorization-initiating domain. Entry page domain: {referer}",
    ),
    "empty": ("空", "empty"),
    "redirect_error": (
        "回调地址 redirect_uri 的域名与授权发起页域名不一致",
        "redirect_uri's domain differs from the initiating domain",
    ),
    "appid_error": ("component_appid 无效", "component_appid is invalid"),
    "code_error": (
        "pre_auth_code 无效或已过期，请回到第三方平台重新发起授权",
        "pre_auth_code is invalid, used or expired; start again from the platform",
    ),
    # WeChat: "预授权码有效期内只能使用一次", "扫码使用过就算已使用" (reference §3.2).
    "code_used": (
        "该二维码已被扫码使用，预授权码只能使用一次；请回到第三方平台刷新页面获取新的二维码",
        "This QR code was already scanned: a pre_auth_code can be used once. "
        "Go back to the platform and reload its page for a new one",
    ),
    "biz_error": ("只有该账号的管理员才能授权", "Only the account's administrator can authorize"),
    "unreleased": (
        UNRELEASED,
        "This third-party platform awaits its network-wide release: release it, or add the "
        "account to its authorization test list (授权测试公众号列表), then try again",
    ),
    "assistant_title": ("公众平台安全助手", "Security assistant"),
    "assistant_sub": (
        "绑定查询 · 微信号绑定账号的授权管理",
        "Bindings · manage the authorizations of your accounts",
    ),
    "our_grant": ("已授权的第三方平台", "Authorized platform"),
    "not_granted": ("未授权给本沙箱的第三方平台", "Not authorized to this sandbox's platforms"),
    "other_platforms": ("其他第三方平台", "Other third-party platforms"),
    "update": ("更新授权", "Update authorization"),
    "revoke": ("取消授权", "Revoke"),
    "revoke_confirm": (
        "确定取消授权？第三方平台将无法再代你管理该账号。",
        "Revoke? The platform can no longer manage this account.",
    ),
    "done": ("操作成功", "Done"),
    "principal": ("主体", "Principal"),
    "none": ("无", "none"),
    "conversations": ("用户消息（发给已授权账号）", "User messages (to authorized accounts)"),
    "conversations_sub": (
        "POST /sandbox/api/user-message 发送；微信每次等待 5 秒，最多尝试 3 次",
        "Sent with POST /sandbox/api/user-message; WeChat waits 5 s per attempt, 3 attempts",
    ),
    "no_messages": ("还没有用户消息", "No user messages yet"),
    "msg_at": ("时间", "Time"),
    "msg_user": ("用户 openid", "User openid"),
    "msg_sent": ("用户发送", "User sent"),
    "msg_reply": ("回复", "Reply"),
    "msg_attempts": ("尝试次数", "Attempts"),
    "msg_time": ("回复耗时", "Reply time"),
    "msg_event": ("事件", "event"),
    "msg_duplicate": ("重复推送", "duplicate"),
    "no_reply": ("无回复", "no reply"),
    "msg_failed": ("失败", "failed"),
    "msg_pending": ("发送中", "sending"),
}


def lang() -> str:
    """The page language: ?lang=, then the cookie, then zh."""
    chosen = request.args.get("lang") or request.cookies.get("sandbox_lang") or "zh"
    return "en" if chosen == "en" else "zh"


def t(key: str, **values) -> str:
    """Translate `key` into the page language."""
    zh, en = TEXTS[key]
    text = en if lang() == "en" else zh
    return text.format(**values) if values else text
