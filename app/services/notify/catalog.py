"""Every alert kind: its severity, a bilingual title and the remedy in words.

The kinds are the stable identifiers stored in `health_alerts.kind`. Notifications carry both
languages (an operations group rarely shares one locale); pages pick the viewer's language.
"""

from __future__ import annotations

from dataclasses import dataclass

CRITICAL = "critical"
WARNING = "warning"


@dataclass(frozen=True)
class AlertKind:
    kind: str
    severity: str
    title_zh: str
    title_en: str
    remedy_zh: str
    remedy_en: str

    def title(self, locale: str = "en") -> str:
        return self.title_zh if locale.startswith("zh") else self.title_en

    def remedy(self, locale: str = "en") -> str:
        return self.remedy_zh if locale.startswith("zh") else self.remedy_en


_KINDS = [
    AlertKind(
        "ticket_push_silent",
        WARNING,
        "验证票据推送已停止",
        "Ticket pushes stopped",
        "微信约每 10 分钟推送一次 component_verify_ticket。请确认授权事件接收 URL 可从公网访问、"
        "返回 success；Grantdesk 已调用 api_start_push_ticket 请求恢复推送。票据 12 小时后失效。",
        "WeChat pushes component_verify_ticket about every 10 minutes. Check that the "
        "authorization-event URL is reachable from the internet and answers `success`; Grantdesk "
        "has asked WeChat to restart pushes (api_start_push_ticket). The last ticket lasts 12 h.",
    ),
    AlertKind(
        "ticket_rejected",
        CRITICAL,
        "微信拒绝了验证票据",
        "Ticket rejected",
        "微信认为 component_verify_ticket 已过期或无效（61005/61006）。请检查事件接收 URL 与 "
        "EncodingAESKey 配置，等待下一次推送；收到新票据后会自动恢复。",
        "WeChat called the component_verify_ticket expired or invalid (61005/61006). Check the "
        "event URL and EncodingAESKey settings and wait for the next push; Grantdesk recovers "
        "by itself once a new ticket arrives.",
    ),
    AlertKind(
        "no_valid_ticket",
        CRITICAL,
        "没有有效的验证票据",
        "No valid ticket",
        "没有 12 小时内的 component_verify_ticket，无法获取第三方平台令牌。请确认授权事件接收 URL "
        "配置正确、可访问，并在开放平台后台检查推送状态。",
        "There is no component_verify_ticket younger than 12 h, so no component token can be "
        "obtained. Check that the authorization-event URL is configured and reachable, and the "
        "push status in the Open Platform console.",
    ),
    AlertKind(
        "foreign_refresh",
        CRITICAL,
        "第三方平台令牌在别处被刷新",
        "Component token refreshed elsewhere",
        "另一个使用相同 AppSecret 的环境在刷新 component_access_token，导致本系统的令牌失效。"
        "请停止其他环境（测试机、旧服务器）使用生产 AppSecret，只让 Grantdesk 刷新令牌。",
        "Another environment using the same AppSecret refreshes the component_access_token and "
        "invalidates ours. Stop other environments (test hosts, old servers) from using the "
        "production AppSecret; only Grantdesk may refresh.",
    ),
    AlertKind(
        "quota_exceeded",
        CRITICAL,
        "接口调用次数已达每日上限",
        "API daily quota exhausted",
        "微信返回 45009：接口今日调用次数已用完。可调用 clear_quota 重置（每月 10 次），"
        "或等待次日 0 点恢复；并查找异常调用来源。",
        "WeChat answered 45009: the API's daily quota is used up. Reset it with clear_quota "
        "(10 resets a month) or wait for midnight (Beijing time), and find what calls so often.",
    ),
    AlertKind(
        "component_token_refresh_failed",
        CRITICAL,
        "第三方平台令牌刷新失败",
        "Component token refresh failing",
        "获取 component_access_token 失败。请查看错误码与日志；网络故障时会自动重试。",
        "Fetching the component_access_token fails. Look at the error code and the logs; network "
        "failures are retried automatically.",
    ),
    AlertKind(
        "inbox_failures",
        WARNING,
        "事件处理持续失败",
        "Events keep failing",
        "有推送事件多次处理失败。请在运维台查看失败事件与错误，修复后重放。",
        "A pushed event failed every processing attempt. Look at the failed events and their "
        "errors in the staff console, fix the cause and replay them.",
    ),
    AlertKind(
        "ip_not_whitelisted",
        CRITICAL,
        "服务器 IP 不在白名单中",
        "Server IP not in the whitelist",
        "微信返回 61004：调用接口的服务器出口 IP 未加入第三方平台的白名单（常见于新增服务器后）。"
        "请登录微信开放平台 → 第三方平台 → 开发资料，把所有服务器的出口 IP 加入白名单。",
        "WeChat answered 61004: the server's outbound IP is not in the platform's IP whitelist "
        "(common after adding hosts). In the Open Platform console, open the platform's "
        "development settings and add every server's outbound IP to the whitelist.",
    ),
    AlertKind(
        "invalid_appsecret",
        CRITICAL,
        "AppSecret 无效",
        "Invalid AppSecret",
        "微信认为第三方平台的 AppSecret 无效（40125）或缺失（41004），可能已在开放平台重置。"
        "请把当前 AppSecret 写入 WECHAT_COMPONENT_APPSECRET 并重启服务。",
        "WeChat calls the platform's AppSecret invalid (40125) or missing (41004); it may have "
        "been reset in the Open Platform console. Put the current AppSecret in "
        "WECHAT_COMPONENT_APPSECRET and restart.",
    ),
]

KINDS: dict[str, AlertKind] = {k.kind: k for k in _KINDS}


def describe(kind: str) -> AlertKind:
    """The catalog entry of `kind` (an unknown kind gets a generic warning entry)."""
    return KINDS.get(kind) or AlertKind(
        kind,
        WARNING,
        kind,
        kind,
        "请在运维台的平台健康页查看详情。",
        "See the platform health page in the staff console.",
    )


def severity(kind: str) -> str:
    return describe(kind).severity
