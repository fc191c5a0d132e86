"""Relay statistics: counts per status, p50/p99 reply times, last errors, accounts, dead letters."""

import math
import random
from datetime import timedelta

import pytest

from app.services.relay import routes, stats
from tests.staff.conftest import make_account
from tests.staff.relay_rows import make_delivery, make_route


def nearest_rank(values, percent):
    ordered = sorted(values)
    return ordered[math.ceil(percent / 100 * len(ordered)) - 1]


def test_counts_per_status_over_the_retention_window(app):
    route, other = make_route(mode="reply"), make_route()
    account = make_account()
    for status, n in (("delivered", 3), ("late", 2), ("failed", 1)):
        for _ in range(n):
            make_delivery(route, account, status=status, duration_ms=10)
    make_delivery(route, account, status="delivered", age=timedelta(hours=73))  # expired
    make_delivery(other, account, status="dead")
    make_delivery(other, account, status="pending")
    got = stats.route_stats()
    assert got[route.id].counts == {"delivered": 3, "late": 2, "failed": 1, "dead": 0,
                                    "pending": 0, "in_flight": 0}  # fmt: skip
    assert got[other.id].counts["dead"] == 1 and got[other.id].counts["pending"] == 1
    assert got[other.id].p50_ms is None and got[other.id].sampled == 0
    assert stats.route_stats([route.id]).keys() == {route.id}
    assert stats.route_stats([]) == {}


@pytest.mark.parametrize("seed", [3, 11, 2024])
def test_p50_and_p99_match_the_nearest_rank_of_the_durations(app, seed):
    rng = random.Random(seed)
    route, account = make_route(mode="reply"), make_account()
    durations = [rng.randint(1, 4000) for _ in range(rng.randint(1, 150))]
    for ms in durations:
        make_delivery(route, account, status=rng.choice(["delivered", "late"]), duration_ms=ms)
    make_delivery(route, account, status="failed")  # no duration: not in the percentiles
    got = stats.route_stats([route.id])[route.id]
    assert (got.p50_ms, got.p99_ms, got.sampled) == (
        nearest_rank(durations, 50),
        nearest_rank(durations, 99),
        len(durations),
    )


def test_percentiles_cover_the_most_recent_sample_only(app, monkeypatch):
    monkeypatch.setattr(stats, "PERCENTILE_SAMPLE", 10)
    route, account = make_route(), make_account()
    for ms in [5000] * 20 + list(range(1, 11)):  # the slow ones are older
        make_delivery(route, account, duration_ms=ms)
    got = stats.route_stats([route.id])[route.id]
    assert (got.p50_ms, got.p99_ms, got.sampled) == (5, 10, 10)
    assert got.counts["delivered"] == 30


def test_last_errors_are_short_and_newest_first(app):
    route, account = make_route(), make_account()
    make_delivery(route, account, status="delivered", last_status_code=200)
    old = make_delivery(route, account, status="dead", attempts=8, last_status_code=503,
                        last_error="HTTP 503 from the target")  # fmt: skip
    new = make_delivery(route, account, status="pending", attempts=2, last_error="x" * 200)
    errors = stats.route_stats([route.id], last_errors=5)[route.id].last_errors
    assert [e.delivery_id for e in errors] == [new.id, old.id]
    assert errors[0].error == "x" * stats.ERROR_TEXT and errors[1].status_code == 503
    assert stats.route_stats([route.id])[route.id].last_errors == []


def test_account_stats_per_route_and_per_account(app):
    one, two = make_route(name="CRM"), make_route(name="Bot")
    busy, quiet = make_account(), make_account()
    for status in ("delivered", "delivered", "dead", "pending"):
        make_delivery(one, busy, status=status)
    make_delivery(one, quiet, status="delivered")
    make_delivery(two, busy, status="failed")
    rows = stats.account_stats(route_id=one.id)
    assert [(r.appid, r.total, r.state) for r in rows] == [(busy.appid, 4, "dead"),
                                                           (quiet.appid, 1, "ok")]  # fmt: skip
    assert rows[0].counts["delivered"] == 2 and rows[0].route_name == "CRM"
    assert rows[0].account_name == busy.nick_name and rows[0].last_at is not None
    mine = stats.account_stats(authorizer_id=busy.id)
    assert {(r.route_name, r.state) for r in mine} == {("CRM", "dead"), ("Bot", "errors")}
    assert len(stats.account_stats(limit=1)) == 1


def test_dead_letters_newest_first_with_paging(app):
    route, account = make_route(), make_account()
    dead = [make_delivery(route, account, status="dead", msg_type="event.subscribe",
                          attempts=8, last_error="timed out") for _ in range(3)]  # fmt: skip
    make_delivery(route, account, status="pending")
    make_delivery(make_route(), account, status="dead")
    letters = stats.dead_letters(route.id)
    assert [d.delivery_id for d in letters] == [d.id for d in reversed(dead)]
    assert letters[0].msg_type == "event.subscribe" and letters[0].appid == account.appid
    assert letters[0].attempts == 8 and letters[0].error == "timed out"
    page = stats.dead_letters(route.id, before=letters[0].delivery_id, limit=1)
    assert [d.delivery_id for d in page] == [dead[1].id]


def test_every_status_format_and_mode_has_a_label():
    from app.labels import VOCABULARIES
    from app.models.relay import FORMATS, MODES

    assert set(stats.STATUSES) <= VOCABULARIES["relay_delivery_status"].keys()
    assert set(FORMATS) <= VOCABULARIES["relay_format"].keys()
    assert set(MODES) <= VOCABULARIES["relay_mode"].keys()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://crm.example.com/in?key=s3cret#frag", "https://crm.example.com/in"),
        ("http://user:pass@10.0.0.5:8080/hook", "http://10.0.0.5:8080/hook"),
        ("http://[::1]:9000/x?token=abc", "http://[::1]:9000/x"),
        ("https://crm.example.com:notaport/x?k=v", "https://crm.example.com/x"),
    ],
)
def test_display_url_never_shows_query_fragment_or_credentials(url, shown):
    assert routes.display_url(url) == shown
