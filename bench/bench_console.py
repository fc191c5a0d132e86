"""Staff console at volume: server time of the authorizations list, its filters, the overview,
and the memory of a full CSV export.

    .venv/bin/python bench/bench_console.py --db sqlite:////tmp/gd_bench.sqlite
    .venv/bin/python bench/bench_console.py --db postgresql+psycopg://postgres@127.0.0.1/gd_bench \
        --accounts 100000 --merchants 5000 --events 1000000

The database is created and seeded (`flask seed-volume`'s generator) on the first run and reused
afterwards. Times are medians of --repeat requests through the WSGI stack (test client, signed
in as staff), so they include routing, queries and template rendering but no network.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, select, text  # noqa: E402

from app import create_app  # noqa: E402
from app.cli_volume import seed_volume  # noqa: E402
from app.extensions import db  # noqa: E402
from app.models import Authorizer, Merchant  # noqa: E402
from app.services import accounts  # noqa: E402

PASSWORD = "bench-password-123"
SCENARIOS = [
    ("list: default (newest)", "/staff/accounts/"),
    ("list: page 500", "/staff/accounts/?page=500"),
    ("list: status=needs_reauthorization", "/staff/accounts/?status=needs_reauthorization"),
    ("list: type=mini_program, sort=name", "/staff/accounts/?account_type=mini_program&sort=name"),
    ("list: merchant={merchant}", "/staff/accounts/?merchant={merchant}"),
    ("list: set 2 granted", "/staff/accounts/?set_id=2"),
    ("list: set 2 missing", "/staff/accounts/?set_id=2&set_mode=missing"),
    ("list: needs attention", "/staff/accounts/?attention=y"),
    ("list: search name", "/staff/accounts/?q=%E8%A5%BF%E6%B9%96"),
    ("list: search appid", "/staff/accounts/?q={appid}"),
    (
        "list: combined filters",
        "/staff/accounts/?status=active&account_type=official_account&set_id=3&sort=-authorized",
    ),
    ("list: htmx fragment", "/staff/accounts/?status=active&set_id=1"),
    ("account detail", "/staff/accounts/{account}"),
    ("overview", "/staff/"),
    ("health", "/staff/health"),
    ("audit log", "/staff/audit"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", default="sqlite:////tmp/gd_bench.sqlite")
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--merchants", type=int, default=1_000)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--skip-export", action="store_true")
    args = parser.parse_args()
    app = create_app({"ENV_NAME": "test", "SQLALCHEMY_DATABASE_URI": args.db,
                      "TEMPLATES_STRICT_UNDEFINED": False})  # fmt: skip
    with app.app_context():
        prepare(args)
        client = sign_in(app)
        ids = sample_ids()
        print(f"{db.engine.dialect.name}: {count(Authorizer):,} accounts, "
              f"{count(Merchant):,} merchants")  # fmt: skip
        for name, url in SCENARIOS:
            url = url.format(**ids)
            headers = {"HX-Request": "true", "HX-Target": "results"} if "htmx" in name else {}
            times = [timed(client, url, headers) for _ in range(args.repeat)]
            print(f"  {name.format(**ids):<44} median {statistics.median(times):7.1f} ms"
                  f"   (min {min(times):.1f}, max {max(times):.1f})")  # fmt: skip
        if not args.skip_export:
            export(client)


def prepare(args) -> None:
    db.create_all()
    if db.session.scalar(select(func.count(Authorizer.id))):
        return
    started = time.monotonic()
    seed_volume(accounts=args.accounts, merchants=args.merchants, events=args.events,
                echo=print)  # fmt: skip
    analyze()
    print(f"seeded in {time.monotonic() - started:.1f}s")


def analyze() -> None:
    """Statistics for the planner; on PostgreSQL also the visibility map (index-only scans),
    which autovacuum would set in production but not right after a bulk load."""
    statement = "VACUUM ANALYZE" if db.engine.dialect.name == "postgresql" else "ANALYZE"
    with db.engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT").execute(text(statement))


def count(model) -> int:
    return db.session.scalar(select(func.count(model.id)))


def sign_in(app):
    email = "bench-staff@example.com"
    if accounts.find_user_by_email(email) is None:
        accounts.create_staff_user(email, PASSWORD, "Bench")
    client = app.test_client()
    with app.test_request_context():
        pass
    from tests.conftest import csrf_token  # the same helper the tests use

    client.post("/login", data={"email": email, "password": PASSWORD,
                                "csrf_token": csrf_token(client)})  # fmt: skip
    return client


def sample_ids() -> dict:
    merchant = db.session.scalar(
        select(Authorizer.merchant_id).where(Authorizer.merchant_id.is_not(None)).limit(1)
    )
    account, appid = db.session.execute(
        select(Authorizer.id, Authorizer.appid).order_by(Authorizer.id.desc()).limit(1)
    ).one()
    db.session.rollback()
    return {"merchant": merchant, "account": account, "appid": appid}


def timed(client, url: str, headers: dict) -> float:
    started = time.perf_counter()
    response = client.get(url, headers=headers)
    elapsed = (time.perf_counter() - started) * 1000
    assert response.status_code == 200, (url, response.status_code)
    return elapsed


def export(client) -> None:
    tracemalloc.start()
    started = time.perf_counter()
    response = client.get("/staff/accounts/export.csv")
    rows = size = 0
    for chunk in response.response:
        rows += chunk.count(b"\n")
        size += len(chunk)
    elapsed = time.perf_counter() - started
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"  CSV export: {rows - 1:,} rows, {size / 1e6:.1f} MB in {elapsed:.1f}s, "
          f"peak Python memory {peak / 1e6:.1f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
