"""The sandbox's own tables: WeChat's side of the world (never the portal's database)."""

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


class Platform(db.Model):
    """A third-party platform (component) registered in this world; the first one (lowest id) is
    the default, kept in step with the WECHAT_* / SANDBOX_* configuration."""

    id: Mapped[int] = mapped_column(primary_key=True)
    appid: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str | None] = mapped_column(String(64))
    # WeChat's side holds the secret in the clear; it is a sandbox, and it is never logged.
    secret: Mapped[str] = mapped_column(String(128))
    token: Mapped[str] = mapped_column(String(128))
    encoding_aes_key: Mapped[str] = mapped_column(String(43))
    event_url: Mapped[str] = mapped_column(Text)
    message_url: Mapped[str] = mapped_column(Text)
    initiating_domain: Mapped[str] = mapped_column(String(255))
    permission_set_ids: Mapped[list] = mapped_column(JSON, default=list)
    ticket_push_running: Mapped[bool] = mapped_column(Boolean, default=True)
    quota_clears: Mapped[dict] = mapped_column(JSON, default=dict)  # {"YYYY-MM": n}
    # Columns below were added with several platforms; nullable, so older database files get
    # them with ALTER TABLE (None reads as the default: released, no test list, no whitelist).
    # testing | released: until its network-wide release (全网发布) only the accounts on the
    # authorization test list (授权测试公众号/小程序列表) may authorize the platform.
    release_state: Mapped[str | None] = mapped_column(String(16), default="released")
    released_at: Mapped[float | None] = mapped_column(Float)
    test_accounts: Mapped[list | None] = mapped_column(JSON, default=list)  # appids or gh_ ids
    ip_whitelist: Mapped[list | None] = mapped_column(JSON, default=list)  # [] = allow all
    quotas: Mapped[dict | None] = mapped_column(JSON)  # daily limit per API name


FIRST_PLATFORM_ID = select(Platform.id).order_by(Platform.id).limit(1)


def _first_platform_id(context) -> int | None:
    # A row written without a platform (seeded straight into the database, as tests do)
    # belongs to the default platform.
    return context.connection.execute(FIRST_PLATFORM_ID).scalar()


def _platform_column():
    return mapped_column(ForeignKey("platform.id"), index=True, default=_first_platform_id)


class WechatUser(db.Model):
    """A fake WeChat user who administers accounts and signs in on the phone pages."""

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    wechat_id: Mapped[str] = mapped_column(String(64))
    color: Mapped[str] = mapped_column(String(16))
    accounts: Mapped[list["Account"]] = relationship(back_populates="admin", order_by="Account.id")


class Account(db.Model):
    """An Official Account or Mini Program that can authorize third-party platforms."""

    id: Mapped[int] = mapped_column(primary_key=True)
    appid: Mapped[str] = mapped_column(String(32), unique=True)
    type: Mapped[str] = mapped_column(String(20))  # official_account | mini_program
    nick_name: Mapped[str] = mapped_column(String(64))
    user_name: Mapped[str] = mapped_column(String(32))  # original id gh_…
    alias: Mapped[str] = mapped_column(String(64), default="")
    principal_name: Mapped[str] = mapped_column(String(128))
    signature: Mapped[str] = mapped_column(Text, default="")
    service_type: Mapped[int] = mapped_column(Integer, default=0)
    verify_type: Mapped[int] = mapped_column(Integer, default=-1)
    account_status: Mapped[int] = mapped_column(Integer, default=1)
    register_type: Mapped[int] = mapped_column(Integer, default=0)
    categories: Mapped[list] = mapped_column(JSON, default=list)
    color: Mapped[str] = mapped_column(String(16), default="#07C160")
    release_test: Mapped[bool] = mapped_column(Boolean, default=False)
    admin_id: Mapped[int] = mapped_column(ForeignKey("wechat_user.id"))
    admin: Mapped[WechatUser] = relationship(back_populates="accounts")
    foreign_grants: Mapped[list["ForeignGrant"]] = relationship(back_populates="account")
    options: Mapped[dict] = mapped_column(JSON, default=dict)


class ForeignGrant(db.Model):
    """An authorization of an account to some *other* provider's platform."""

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"))
    account: Mapped[Account] = relationship(back_populates="foreign_grants")
    provider_name: Mapped[str] = mapped_column(String(128))
    provider_appid: Mapped[str] = mapped_column(String(32))
    permission_set_ids: Mapped[list] = mapped_column(JSON, default=list)


class Authorization(db.Model):
    """An account's grant to one of our platforms (one row per platform and account; status
    tracks revocation). An account may hold grants to several platforms at once."""

    __table_args__ = (UniqueConstraint("platform_id", "account_id", name="uq_grant_per_platform"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    platform_id: Mapped[int | None] = _platform_column()
    platform: Mapped[Platform | None] = relationship()
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"), index=True)
    account: Mapped[Account] = relationship()
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | revoked
    permission_set_ids: Mapped[list] = mapped_column(JSON, default=list)
    refresh_token: Mapped[str] = mapped_column(String(128))
    previous_refresh_token: Mapped[str | None] = mapped_column(String(128))
    previous_refresh_until: Mapped[float | None] = mapped_column(Float)
    exchanged: Mapped[bool] = mapped_column(Boolean, default=False)
    authorized_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    revoked_at: Mapped[float | None] = mapped_column(Float)


class Ticket(db.Model):
    """A component_verify_ticket that was pushed."""

    id: Mapped[int] = mapped_column(primary_key=True)
    platform_id: Mapped[int | None] = _platform_column()
    value: Mapped[str] = mapped_column(String(128), unique=True)
    issued_at: Mapped[float] = mapped_column(Float)


class Credential(db.Model):
    """Tokens and codes with WeChat's lifetimes; `kind` says which."""

    id: Mapped[int] = mapped_column(primary_key=True)
    platform_id: Mapped[int | None] = _platform_column()
    # component_token | authorizer_token | pre_auth_code | auth_code
    kind: Mapped[str] = mapped_column(String(20), index=True)
    value: Mapped[str] = mapped_column(String(160), unique=True)
    issued_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    # After a refresh the old token keeps working until this moment (the 5-minute overlap).
    superseded_until: Mapped[float | None] = mapped_column(Float)
    killed: Mapped[bool] = mapped_column(Boolean, default=False)
    used_at: Mapped[float | None] = mapped_column(Float)
    # Indexed: every authorizer-token refresh supersedes the account's previous tokens.
    account_id: Mapped[int | None] = mapped_column(ForeignKey("account.id"), index=True)
    account: Mapped[Account | None] = relationship()
    # auth_code: the pre_auth_code it came from; authorizer_token: the auth_code it came from.
    origin: Mapped[str | None] = mapped_column(String(160))
    redirect_uri: Mapped[str | None] = mapped_column(Text)
    # pre_auth_code: when and by which phone (browser, hashed) and WeChat user it was scanned;
    # WeChat: "scanned counts as used", so only that phone and user may go on with it.
    scanned_at: Mapped[float | None] = mapped_column(Float)
    scanner: Mapped[str | None] = mapped_column(String(32))
    scanned_by: Mapped[int | None] = mapped_column(Integer)


class Delivery(db.Model):
    """One push (event or message) to a platform's URLs, with its attempts."""

    id: Mapped[int] = mapped_column(primary_key=True)
    platform_id: Mapped[int | None] = _platform_column()
    info_type: Mapped[str] = mapped_column(String(40))
    authorizer_appid: Mapped[str | None] = mapped_column(String(32))
    url: Mapped[str] = mapped_column(Text)
    inner_xml: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|delivered|failed
    created_at: Mapped[float] = mapped_column(Float)
    duplicate_of: Mapped[int | None] = mapped_column(Integer)
    # User messages (info_type "message:<MsgType>"): the sender, WeChat's MsgId (text and media
    # only) and the decrypted passive reply, if there was one.
    openid: Mapped[str | None] = mapped_column(String(64))
    msg_id: Mapped[int | None] = mapped_column(BigInteger)
    reply_xml: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[list["DeliveryAttempt"]] = relationship(order_by="DeliveryAttempt.number")


class DeliveryAttempt(db.Model):
    """One HTTP attempt of a delivery."""

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("delivery.id"))
    number: Mapped[int] = mapped_column(Integer)
    at: Mapped[float] = mapped_column(Float)
    http_status: Mapped[int | None] = mapped_column(Integer)
    reply: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    elapsed_ms: Mapped[float | None] = mapped_column(Float)


class ApiCall(db.Model):
    """Calls per platform, API name and (Beijing) day: the call counter and the daily quota."""

    id: Mapped[int] = mapped_column(primary_key=True)
    platform_id: Mapped[int | None] = _platform_column()
    name: Mapped[str] = mapped_column(String(64), index=True)
    day: Mapped[str] = mapped_column(String(10))
    calls: Mapped[int] = mapped_column(Integer, default=0)
    quota_used: Mapped[int] = mapped_column(Integer, default=0)


class CustomMessage(db.Model):
    """A customer-service message sent through /cgi-bin/message/custom/send."""

    id: Mapped[int] = mapped_column(primary_key=True)
    platform_id: Mapped[int | None] = _platform_column()
    authorizer_appid: Mapped[str] = mapped_column(String(32))
    touser: Mapped[str] = mapped_column(String(64))
    msgtype: Mapped[str] = mapped_column(String(20))
    content: Mapped[str | None] = mapped_column(Text)
    token_origin: Mapped[str | None] = mapped_column(String(160))
    at: Mapped[float] = mapped_column(Float)
