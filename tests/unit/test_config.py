import pytest

from app import create_app
from app.config import DEV_SECRET_KEY, DEV_WECHAT, InsecureConfigError

GOOD_PRODUCTION = {
    "ENV_NAME": "production",
    "SECRET_KEY": "a-long-random-production-secret",
    "GRANTDESK_ENCRYPTION_KEYS": ["q2YpkR2d0JmIh9ZcT1Cz4r0T0d5aVbS2lZ7eEo2Zk1U="],
    "WECHAT_COMPONENT_APPID": "wxrealcomponent001",
    "WECHAT_COMPONENT_APPSECRET": "real-secret",
    "WECHAT_TOKEN": "real-token",
    "WECHAT_ENCODING_AES_KEY": "Z" * 43,
    "SQLALCHEMY_DATABASE_URI": "sqlite://",
}


def test_production_starts_with_real_secrets():
    app = create_app(GOOD_PRODUCTION)
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["REMEMBER_COOKIE_SECURE"] is True


@pytest.mark.parametrize(
    "name, value",
    [
        ("SECRET_KEY", DEV_SECRET_KEY),
        ("SECRET_KEY", ""),
        ("GRANTDESK_ENCRYPTION_KEYS", []),
        ("WECHAT_COMPONENT_APPSECRET", DEV_WECHAT["WECHAT_COMPONENT_APPSECRET"]),
        ("WECHAT_TOKEN", None),
    ],
)
def test_production_refuses_missing_or_default_secrets(name, value):
    with pytest.raises(InsecureConfigError, match=name):
        create_app({**GOOD_PRODUCTION, name: value})


def test_development_accepts_defaults():
    app = create_app({"ENV_NAME": "development", "SQLALCHEMY_DATABASE_URI": "sqlite://"})
    assert app.config["SECRET_KEY"] == DEV_SECRET_KEY
    assert app.config["WECHAT_API_BASE"].startswith("https://")


def test_plain_postgresql_url_uses_psycopg3():
    app = create_app(
        {"ENV_NAME": "test", "SQLALCHEMY_DATABASE_URI": "postgresql://u@127.0.0.1:5432/x"}
    )
    assert str(app.config["SQLALCHEMY_DATABASE_URI"]).startswith("postgresql+psycopg://")


def test_webhook_url_without_a_secret_is_refused():
    config = {"ENV_NAME": "test", "SQLALCHEMY_DATABASE_URI": "sqlite://"}
    with pytest.raises(InsecureConfigError, match="GRANTDESK_WEBHOOK_SECRET"):
        create_app({**config, "GRANTDESK_WEBHOOK_URL": "https://hooks.example.com/grantdesk"})
    create_app(
        {
            **config,
            "GRANTDESK_WEBHOOK_URL": "https://hooks.example.com/grantdesk",
            "GRANTDESK_WEBHOOK_SECRET": "s3cret",
        }
    )


def test_staff_two_factor_is_required_in_production_and_optional_elsewhere():
    assert create_app(GOOD_PRODUCTION).config["GRANTDESK_STAFF_MFA"] == "required"
    for env in ("development", "test"):
        app = create_app({"ENV_NAME": env, "SQLALCHEMY_DATABASE_URI": "sqlite://"})
        assert app.config["GRANTDESK_STAFF_MFA"] == "optional"


def test_an_unknown_staff_two_factor_mode_is_refused():
    with pytest.raises(ValueError, match="GRANTDESK_STAFF_MFA"):
        create_app({**GOOD_PRODUCTION, "GRANTDESK_STAFF_MFA": "sometimes"})
