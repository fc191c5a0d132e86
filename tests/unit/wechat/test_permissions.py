"""Permission-set catalog: every id of reference §5 present, both languages, unknown ids."""

import pytest

from app.wechat import permissions

OA_IDS = [
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
    12,
    13,
    15,
    22,
    23,
    24,
    26,
    27,
    33,
    34,
    44,
    46,
    47,
    54,
    66,
    89,
    113,
]
MP_IDS = [
    17,
    18,
    19,
    25,
    30,
    31,
    36,
    37,
    40,
    41,
    45,
    48,
    49,
    51,
    52,
    65,
    67,
    70,
    71,
    73,
    76,
    81,
    84,
    85,
]
MP_UNCERTAIN = [88, 93, 119, 142, 182, 185]
EXCLUSIVE = {4, 24, 34, 54, 18, 25, 40, 41, 45, 49, 51, 73, 76, 81}


def test_every_reference_id_present_with_the_right_account_type() -> None:
    catalog = permissions.catalog()
    for set_id in OA_IDS:
        assert catalog[set_id].account_types == ("official_account",)
        assert catalog[set_id].confirmed
    for set_id in MP_IDS:
        assert catalog[set_id].account_types == ("mini_program",)
        assert catalog[set_id].confirmed
    for set_id in MP_UNCERTAIN:
        assert not catalog[set_id].confirmed
    assert set(catalog) == set(OA_IDS) | set(MP_IDS) | set(MP_UNCERTAIN)


def test_zh_names_match_reference() -> None:
    assert permissions.name(1) == "消息管理"
    assert permissions.name(4, "zh_CN") == "网页服务"
    assert permissions.name(18, "zh-Hans") == "小程序开发与数据分析"
    assert permissions.name(113) == "就医助手"
    assert permissions.name(84) == "标准版交易组件优惠券管理"


@pytest.mark.parametrize("set_id", OA_IDS + MP_IDS + MP_UNCERTAIN)
def test_both_languages_non_empty(set_id: int) -> None:
    item = permissions.get(set_id)
    for locale in ("zh", "en"):
        assert item.name(locale).strip() and item.description(locale).strip()
    assert item.name("en").isascii() and item.description("en").isascii()
    assert not item.name("zh").isascii()
    assert len(item.description("en")) < 200  # one line, for merchants


def test_exclusivity() -> None:
    for set_id in EXCLUSIVE:
        assert permissions.is_exclusive(set_id) is True
    assert permissions.is_exclusive(1) is False
    assert permissions.is_exclusive(36) is None and permissions.is_exclusive(85) is None
    assert permissions.is_exclusive(9999) is None


def test_unknown_ids_stay_valid() -> None:
    assert permissions.get(121) is None
    assert permissions.name(121, "en") == "Permission set 121"
    assert permissions.name(121, "zh") == "权限集 121"
    assert permissions.name(121, None) == "Permission set 121"
    assert permissions.description(121, "en") and permissions.description(121, "zh")


def test_for_account_type_and_locale_fallback() -> None:
    oa = permissions.for_account_type("official_account")
    assert [i.id for i in oa] == OA_IDS
    assert len(permissions.for_account_type("mini_program")) == len(MP_IDS) + len(MP_UNCERTAIN)
    with pytest.raises(ValueError):
        permissions.for_account_type("channels")
    assert permissions.name(2, "fr") == "User management"
    assert permissions.catalog() is permissions.catalog()  # cached
    with pytest.raises(TypeError):
        permissions.catalog()[999] = None  # read-only


@pytest.mark.parametrize(
    "row",
    [
        {
            "id": 0,
            "account_types": ["mini_program"],
            "name": {"zh": "x", "en": "x"},
            "description": {"zh": "x", "en": "x"},
        },
        {
            "id": 1,
            "account_types": ["channels"],
            "name": {"zh": "x", "en": "x"},
            "description": {"zh": "x", "en": "x"},
        },
        {
            "id": 1,
            "account_types": ["mini_program"],
            "name": {"zh": " ", "en": "x"},
            "description": {"zh": "x", "en": "x"},
        },
        {
            "id": 1,
            "account_types": ["mini_program"],
            "exclusive": "yes",
            "name": {"zh": "x", "en": "x"},
            "description": {"zh": "x", "en": "x"},
        },
    ],
)
def test_invalid_rows_rejected(row: dict) -> None:
    with pytest.raises(ValueError):
        permissions.PermissionSet.from_json(row)
