"""`flask relay add|list|remove`."""

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import AuditEntry, RelayRoute
from tests import factories

URL = "https://svc.example.com/wechat"


def route_count() -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(RelayRoute))


def test_add_prints_only_the_id_and_the_generated_token_once_on_stderr(runner):
    merchant = factories.make_merchant()
    result = runner.invoke(args=[
        "relay", "add", "--url", URL, "--format", "wechat-xml", "--mode", "reply",
        "--merchant", str(merchant.id), "--types", "text,event.CLICK", "--name", "客服",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    route = db.session.get(RelayRoute, int(result.stdout.strip()))
    assert result.stdout == f"{route.id}\n"
    assert result.stderr == f"Generated token (shown once): {route.token}\n"
    assert (route.name, route.format, route.mode, route.merchant_id) == (
        "客服", "wechat-xml", "reply", merchant.id,
    )  # fmt: skip
    assert route.msg_types == ["event.click", "text"]
    assert db.session.scalar(select(AuditEntry.actor)) == "cli"


def test_add_with_a_given_secret_prints_no_credential(runner):
    result = runner.invoke(args=[
        "relay", "add", "--url", URL, "--format", "json", "--mode", "async",
        "--secret", "a-given-secret-of-some-length", "--appid", "wx0123456789abcdef",
    ])  # fmt: skip
    assert result.exit_code == 0 and result.stderr == ""
    route = db.session.get(RelayRoute, int(result.stdout))
    assert route.secret == "a-given-secret-of-some-length"
    assert route.authorizer_appid == "wx0123456789abcdef"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--url", "ftp://x", "--format", "json", "--mode", "async"], "http:// or https://"),
        (["--url", URL, "--format", "xml", "--mode", "async"], "Invalid value for '--format'"),
        (["--url", URL, "--format", "json"], "Missing option '--mode'"),
        (["--url", URL, "--format", "json", "--mode", "async", "--merchant", "424242"],
         "No such merchant"),
        (["--url", URL, "--format", "json", "--mode", "async", "--types", "text,bogus"],
         "Unknown message type bogus"),
        (["--url", URL, "--format", "json", "--mode", "async", "--token", "abc123"],
         "json routes use a secret"),
        (["--url", URL, "--format", "json", "--mode", "async", "--merchant", "1",
          "--appid", "wx0123456789abcdef"], "not both"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_and_nothing_is_written(runner, args, message):
    result = runner.invoke(args=["relay", "add", *args])
    assert result.exit_code != 0
    assert message in result.output
    assert route_count() == 0
    assert db.session.scalar(select(func.count()).select_from(AuditEntry)) == 0


def test_an_overlapping_reply_route_is_refused(runner):
    base = ["relay", "add", "--url", URL, "--format", "json", "--mode", "reply"]
    first = runner.invoke(args=base)
    assert first.exit_code == 0
    second = runner.invoke(args=base)
    assert second.exit_code != 0
    assert f"Reply route {first.stdout.strip()}" in second.output
    assert route_count() == 1


def test_list_shows_routes_without_credentials_and_remove_deletes(runner):
    merchant = factories.make_merchant()
    ids = []
    for args in (
        ["--format", "wechat-xml", "--mode", "reply", "--token", "listtoken1", "--name", "A"],
        ["--format", "json", "--mode", "async", "--merchant", str(merchant.id), "--types",
         "image"],
    ):  # fmt: skip
        result = runner.invoke(args=["relay", "add", "--url", URL, *args])
        ids.append(int(result.stdout))
    listing = runner.invoke(args=["relay", "list"])
    assert listing.exit_code == 0
    lines = listing.stdout.splitlines()
    assert lines[0].split() == [
        "id", "name", "format", "mode", "platform", "scope", "types", "paused"
    ]  # fmt: skip
    assert lines[1].split() == [str(ids[0]), "A", "wechat-xml", "reply", "*", "all", "*", "no"]
    assert lines[2].split() == [str(ids[1]), "svc.example.com", "json", "async", "*",
                                f"merchant:{merchant.id}", "image", "no"]  # fmt: skip
    secret = db.session.get(RelayRoute, ids[1]).secret
    assert "listtoken1" not in listing.output and secret not in listing.output

    removed = runner.invoke(args=["relay", "remove", str(ids[0])])
    assert removed.exit_code == 0
    assert route_count() == 1
    missing = runner.invoke(args=["relay", "remove", str(ids[0])])
    assert missing.exit_code != 0 and f"no relay route {ids[0]}" in missing.output
