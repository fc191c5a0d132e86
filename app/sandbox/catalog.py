"""The sandbox's view of app.wechat's permission-set catalog and release-test accounts."""

from app.wechat import permissions
from app.wechat.release import RELEASE_TEST_ACCOUNTS


def applies(set_id: int, account_type: str) -> bool:
    """Whether a permission set can be granted by this kind of account."""
    entry = permissions.get(set_id)
    return entry is not None and account_type in entry.account_types


def is_exclusive(set_id: int) -> bool:
    """Whether only one platform at a time may hold the set (unknown counts as shareable)."""
    return bool(permissions.is_exclusive(set_id))


def _ids(account_type: str, exclusive: bool) -> list[int]:
    # Seed foreign grants only from sets WeChat's own tables confirm (reference §5.3).
    return [
        s.id
        for s in permissions.for_account_type(account_type)
        if s.confirmed and bool(s.exclusive) == exclusive
    ]


def exclusive_ids(account_type: str) -> list[int]:
    """Exclusive set ids for an account type."""
    return _ids(account_type, True)


def non_exclusive_ids(account_type: str) -> list[int]:
    """Shareable set ids for an account type."""
    return _ids(account_type, False)


def name(set_id: int, lang: str = "zh") -> str:
    """Display name of a set in `lang` (zh or en)."""
    return permissions.name(set_id, lang)


def description(set_id: int, lang: str = "zh") -> str:
    """Merchant-facing description of a set in `lang`."""
    return permissions.description(set_id, lang)


def release_accounts() -> list[dict]:
    """WeChat's release-test accounts: appid, user_name, type, nick_name, group."""
    kinds = {"official_account": "公众号", "mini_program": "小程序"}
    return [
        {
            "appid": a.appid,
            "user_name": a.username,
            "type": a.account_type,
            "group": a.group,
            "nick_name": f"全网发布测试{kinds[a.account_type]}{a.group}",
        }
        for a in RELEASE_TEST_ACCOUNTS
    ]
