"""Seed the world: the default platform, fake WeChat users and their accounts (deterministic per
seed)."""

import random
import secrets

from flask import current_app
from sqlalchemy import select

from app.sandbox import catalog, clock
from app.sandbox.config import parse_ip_list
from app.sandbox.models import Account, Authorization, ForeignGrant, Platform, WechatUser, db

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
GIVEN = [
    "伟",
    "芳",
    "娜",
    "秀英",
    "敏",
    "静",
    "丽",
    "强",
    "磊",
    "洋",
    "艳",
    "勇",
    "军",
    "杰",
    "娟",
    "涛",
    "明",
    "超",
    "秀兰",
    "霞",
    "平",
    "刚",
    "桂英",
    "晓东",
    "雨桐",
    "子涵",
    "浩然",
    "欣怡",
]
PINYIN = ["wei", "fang", "na", "xiu", "min", "jing", "li", "qiang", "lei", "yang", "yan", "yong"]
BRANDS = [
    "悦享咖啡",
    "青禾书店",
    "小鹿生鲜",
    "山海茶铺",
    "晨光烘焙",
    "拾味面馆",
    "橙子花艺",
    "暖居家纺",
    "云朵宠物",
    "木子文创",
    "禾田果园",
    "星河影院",
    "乐跑体育",
    "简约眼镜",
    "福满包子",
    "知行教育",
    "鲜到家超市",
    "栖迟民宿",
    "小满甜品",
    "匠心木作",
    "安康药房",
    "悠然瑜伽",
    "海盐面包",
    "北岸书屋",
]
CITIES = ["上海", "杭州", "深圳", "成都", "南京", "苏州", "广州", "武汉", "西安", "厦门"]
TRADES = ["餐饮管理", "网络科技", "文化传播", "商贸", "信息技术", "电子商务"]
PROVIDERS = [
    "有赞",
    "微盟",
    "小鹅通",
    "点点客",
    "乐享云",
    "客如云",
    "微擎",
    "第三方甲",
    "第三方乙",
    "连锁通",
    "营销宝",
    "会员云",
    "店小二",
    "排队通",
    "积分宝",
    "门店管家",
    "云报名",
]
MP_CATEGORIES = [
    ("生活服务", "丽人服务"),
    ("餐饮", "餐饮服务场所/餐饮服务管理企业"),
    ("教育", "培训机构"),
    ("商家自营", "食品"),
    ("工具", "信息查询"),
    ("旅游", "住宿服务"),
]
COLORS = ["#07C160", "#10AEFF", "#FA9D3B", "#FA5151", "#6467F0", "#2BA245", "#B37FEB", "#1485EE"]
PROVIDER_LIMIT = 15


def seed_world(seed: int | None = None) -> None:
    """Drop everything and build a fresh world from the app config (same seed, same world)."""
    config = current_app.config
    rng = random.Random(config["SANDBOX_SEED"] if seed is None else seed)
    # drop_all runs on its own connection: this session must not hold the tables (PostgreSQL
    # would wait forever for its open transaction).
    db.session.rollback()
    db.drop_all()
    db.create_all()
    platform = Platform(
        appid=config["WECHAT_COMPONENT_APPID"],
        secret=config["WECHAT_COMPONENT_APPSECRET"],
        token=config["WECHAT_TOKEN"],
        encoding_aes_key=config["WECHAT_ENCODING_AES_KEY"],
        event_url=config["SANDBOX_EVENT_URL"],
        message_url=config["SANDBOX_MESSAGE_URL"],
        initiating_domain=config["SANDBOX_INITIATING_DOMAIN"],
        permission_set_ids=parse_ids(config["SANDBOX_PERMISSION_SETS"]),
        ticket_push_running=True,
        quota_clears={},
        release_state="released",
        test_accounts=[],
        ip_whitelist=parse_ip_list(config["SANDBOX_IP_WHITELIST"]),
        quotas=dict(config["SANDBOX_QUOTAS"]),
    )
    db.session.add(platform)
    users = [_make_user(rng, i) for i in range(max(1, config["SANDBOX_USERS"]))]
    db.session.add_all(users)
    db.session.flush()
    _scenario_accounts(rng, users[0])
    for user in users[1:]:
        for _ in range(config["SANDBOX_ACCOUNTS_PER_USER"]):
            account = _make_account(rng, user, rng.choice(["official_account", "mini_program"]))
            _random_foreign_grants(rng, account)
    _release_test_accounts(rng)
    db.session.flush()
    authorize_release_test_accounts(platform)
    db.session.commit()


def parse_ids(value) -> list[int]:
    """Parse '1|2,3' or [1, 2] into a sorted list of distinct ints."""
    if isinstance(value, str):
        value = [part for part in value.replace("|", ",").split(",") if part.strip()]
    return sorted({int(part) for part in value or []})


def _make_user(rng: random.Random, index: int) -> WechatUser:
    name = rng.choice(SURNAMES) + rng.choice(GIVEN)
    wechat_id = f"{rng.choice(PINYIN)}_{rng.randrange(1000, 9999)}"
    return WechatUser(name=name, wechat_id=wechat_id, color=COLORS[index % len(COLORS)])


def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def _make_account(rng: random.Random, admin: WechatUser, kind: str, **fields) -> Account:
    brand = rng.choice(BRANDS)
    individual = rng.random() < 0.2
    principal = "个人" if individual else f"{rng.choice(CITIES)}{brand}{rng.choice(TRADES)}有限公司"
    is_mp = kind == "mini_program"
    values = {
        "appid": "wx" + _hex(rng, 16),
        "type": kind,
        "nick_name": brand + ("小程序" if is_mp and rng.random() < 0.5 else ""),
        "user_name": "gh_" + _hex(rng, 12),
        "alias": ""
        if is_mp or rng.random() < 0.4
        else f"{rng.choice(PINYIN)}{rng.randrange(100, 999)}",
        "principal_name": principal,
        "signature": f"{brand}官方{'小程序' if is_mp else '公众号'}，欢迎关注。",
        # OA: 0 subscription, 2 service; MP: 0 ordinary (see reference §3.5).
        "service_type": 0 if is_mp else rng.choice([0, 2, 2]),
        "verify_type": -1 if individual else rng.choice([0, 0, -1]),
        "categories": [dict(zip(("first", "second"), rng.choice(MP_CATEGORIES), strict=True))]
        if is_mp
        else [],
        "color": rng.choice(COLORS),
        "admin": admin,
        "options": {}
        if is_mp
        else {"location_report": "0", "voice_recognize": "0", "customer_service": "0"},
    }
    values.update(fields)
    account = Account(**values)
    db.session.add(account)
    return account


def _grant(account: Account, provider: str, set_ids: list[int], rng: random.Random) -> None:
    db.session.add(
        ForeignGrant(
            account=account,
            provider_name=provider,
            provider_appid="wx" + _hex(rng, 16),
            permission_set_ids=set_ids,
        )
    )


def _random_foreign_grants(rng: random.Random, account: Account) -> None:
    shared = catalog.non_exclusive_ids(account.type)
    exclusive = catalog.exclusive_ids(account.type)
    for provider in rng.sample(PROVIDERS, rng.randrange(0, 4)):
        sets = rng.sample(shared, min(len(shared), rng.randrange(1, 4)))
        if exclusive and rng.random() < 0.25:
            sets.append(rng.choice(exclusive))
        _grant(account, provider, sorted(sets), rng)


def _scenario_accounts(rng: random.Random, user: WechatUser) -> None:
    """Give the first user one account of every interesting kind (tests find them by scenario)."""
    _make_account(rng, user, "official_account", service_type=2, verify_type=0)
    held = _make_account(rng, user, "official_account", service_type=2, verify_type=0)
    _grant(held, "微盟", [1, 4, 24], rng)  # 4 web services and 24 account binding are exclusive
    _make_account(rng, user, "mini_program", verify_type=0)
    full = _make_account(rng, user, "mini_program", verify_type=0)
    for provider in (PROVIDERS * 2)[:PROVIDER_LIMIT]:
        _grant(full, provider, [17], rng)
    mp = _make_account(rng, user, "mini_program", verify_type=0)
    _grant(mp, "有赞", [17, 18], rng)  # 18 development & analytics is exclusive


def _release_test_accounts(rng: random.Random) -> None:
    """WeChat's release-test accounts (authorized to every platform, see below)."""
    admin = WechatUser(name="全网发布测试", wechat_id="weixin_release_test", color="#576B95")
    db.session.add(admin)
    for spec in catalog.release_accounts():
        _make_account(
            rng,
            admin,
            spec["type"],
            appid=spec["appid"],
            user_name=spec["user_name"],
            nick_name=spec["nick_name"],
            principal_name="深圳市腾讯计算机系统有限公司",
            verify_type=0,
            release_test=True,
        )


def authorize_release_test_accounts(platform: Platform) -> None:
    """WeChat adds its release-test accounts to every platform and authorizes them with the
    platform's sets, so that the release check can run."""
    at = clock.now()
    accounts = db.session.execute(select(Account).filter_by(release_test=True).order_by(Account.id))
    for account in accounts.scalars():
        sets = [i for i in platform.permission_set_ids if catalog.applies(i, account.type)]
        db.session.add(
            Authorization(
                platform=platform,
                account=account,
                status="active",
                permission_set_ids=sets,
                exchanged=False,
                refresh_token=new_refresh_token(),
                authorized_at=at,
                updated_at=at,
            )
        )


def new_refresh_token() -> str:
    """A fresh authorizer_refresh_token in WeChat's observed format."""
    return "refreshtoken@@@" + secrets.token_urlsafe(32)


def scenario(account: Account) -> str:
    """Name the seeded situation an account illustrates (shown in state and on the dashboard)."""
    if account.release_test:
        return "release_test"
    if len(account.foreign_grants) >= PROVIDER_LIMIT:
        return "provider_limit"
    held = {i for g in account.foreign_grants for i in g.permission_set_ids}
    if held & set(catalog.exclusive_ids(account.type)):
        return "exclusive_elsewhere"
    return "fresh" if not account.foreign_grants else "shared"
