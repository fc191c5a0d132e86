"""Token custody: API reads against a bare endpoint, and a sweep of many authorizers.

1. `GET /api/v1/authorizers/<appid>/access-token` (API key check, rate limit, custody read with
   decryption, audit row + commit) against a bare `GET /bench/bare` JSON endpoint served by the
   same gunicorn (gthread) in the same run: closed-loop throughput, ratio (target >= 0.5).
2. A sweep of --authorizers (default 10,000) tokens, all due, against the WeChat sandbox
   (in-process, real HTTP), with bounded concurrency: wall time (target < 60 s).

    .venv/bin/python bench/bench_tokens.py                     # SQLite file
    .venv/bin/python bench/bench_tokens.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._server import portal, prepare_database, start_gunicorn, stop, throughput  # noqa: E402


def wsgi_app():
    """gunicorn entry (`bench.bench_tokens:wsgi_app()`): the portal plus a bare endpoint."""
    app = portal(os.environ["BENCH_DATABASE_URL"])

    @app.get("/bench/bare")
    def bare():
        return {"access_token": "x" * 100, "expires_in": 7200}

    return app


def _seed_reads(url: str, count: int) -> tuple[list[str], str]:
    """Authorizers with fresh tokens in custody, and an API key; returns (appids, key)."""
    from app.extensions import db
    from app.models import Authorizer, AuthorizerToken, Grant, Merchant
    from app.services import clock
    from app.services.custody import apikeys

    app = portal(url)
    with app.app_context():
        merchant = Merchant(name="bench")
        db.session.add(merchant)
        appids = []
        for n in range(count):
            authorizer = Authorizer(appid=f"wxbench{n:010d}", merchant_id=None)
            authorizer.grant = Grant(set_ids=[1, 2])
            authorizer.token = AuthorizerToken(
                access_token=f"{n}_" + "a" * 120,
                access_expires_at=clock.now() + timedelta(hours=2),
                refresh_token="refreshtoken@@@" + "r" * 40,
                consecutive_failures=0,
            )
            db.session.add(authorizer)
            appids.append(authorizer.appid)
        db.session.commit()
        _, key = apikeys.create_api_key("bench", ["tokens:read"], rate_limit="1000000 per minute")
        db.engine.dispose()
    return appids, key


def reader(base: str, paths: list[str], key: str):
    """send(session) for the load shapes: a GET of a random one of `paths` with the API key."""
    auth = {"Authorization": f"Bearer {key}"}

    def send(session) -> bool:
        return session.get(base + random.choice(paths), headers=auth, timeout=30).status_code == 200

    return send


def bench_reads(url: str, args) -> tuple[float, float]:
    appids, key = _seed_reads(url, args.read_authorizers)
    proc, base = start_gunicorn(
        "bench.bench_tokens:wsgi_app()",
        url,
        args.workers,
        args.threads,
        probe=("GET", "/bench/bare"),
    )
    try:
        token_paths = [f"/api/v1/authorizers/{a}/access-token" for a in appids]
        bare_get = reader(base, ["/bench/bare"], key)
        throughput(bare_get, args.concurrency, 1)  # warm up
        bare, bare_errors = throughput(bare_get, args.concurrency, args.seconds)
        reads, read_errors = throughput(
            reader(base, token_paths, key), args.concurrency, args.seconds
        )
    finally:
        stop(proc)
    print(f"{'endpoint':<34}{'req/s':>10}{'errors':>8}")
    print(f"{'bare GET /bench/bare':<34}{bare:>10.0f}{bare_errors:>8}")
    print(f"{'GET .../access-token':<34}{reads:>10.0f}{read_errors:>8}")
    print(f"ratio token reads / bare: {reads / bare:.2f} (target >= 0.5)")
    return bare, reads


def stub_wechat(environ, start_response):
    """A bare WSGI stand-in for WeChat's token APIs (measures the portal's own cost)."""
    import json

    path = environ["PATH_INFO"]
    if path.endswith("/api_component_token"):
        body = {"component_access_token": "stub-component-token", "expires_in": 7200}
    else:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        refresh = json.loads(environ["wsgi.input"].read(length))["authorizer_refresh_token"]
        body = {"authorizer_access_token": "stub_" + "a" * 100, "expires_in": 7200,
                "authorizer_refresh_token": refresh}  # fmt: skip
    data = json.dumps(body).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [data]


def bench_sweep(url: str, args) -> float:
    import logging

    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    from app.extensions import db
    from app.sandbox import create_app as sandbox_app
    from app.services.custody import sweep
    from app.services.platform import credentials
    from app.wechat.events import ComponentVerifyTicket
    from tests.grants.fleet import seed_portal, seed_sandbox

    tmp = tempfile.mkdtemp(
        prefix="bench-sandbox-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None
    )
    sandbox = sandbox_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp}/sandbox.sqlite",
                           "SANDBOX_TICKET_INTERVAL": 0,
                           "SANDBOX_EVENT_URL": "http://127.0.0.1:9/"})  # fmt: skip
    server = make_server("127.0.0.1", 0, sandbox, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sandbox_url = f"http://127.0.0.1:{server.server_port}"
    if args.wechat == "stub":
        stub = make_server("127.0.0.1", 0, stub_wechat, threaded=True)
        threading.Thread(target=stub.serve_forever, daemon=True).start()
        api_base = f"http://127.0.0.1:{stub.server_port}"
    else:
        api_base = sandbox_url

    class Handle:  # what seed_sandbox needs of the pytest fixture
        app = sandbox

    rows = seed_sandbox(Handle, args.authorizers)
    ticket = requests.post(f"{sandbox_url}/sandbox/api/push-ticket", json={}, timeout=30).json()
    app = portal(url, WECHAT_API_BASE=api_base)
    with app.app_context():
        db.drop_all()
        db.create_all()
        from app.models import Merchant

        merchant = Merchant(name="bench")
        db.session.add(merchant)
        db.session.commit()
        seed_portal(db.session, rows, merchant.id)
        event = ComponentVerifyTicket(
            app.config["WECHAT_COMPONENT_APPID"], int(time.time()), "component_verify_ticket",
            {}, ticket["ticket"],
        )  # fmt: skip
        credentials.store_ticket(event)
        cpu = time.process_time()
        result = sweep.sweep_tokens(batch_size=500, concurrency=args.sweep_concurrency)
        cpu = time.process_time() - cpu
    server.shutdown()
    print(
        f"sweep ({args.wechat}): {args.authorizers} authorizers, "
        f"concurrency {args.sweep_concurrency}: "
        f"{result.seconds:.1f} s ({args.authorizers / result.seconds:.0f}/s), "
        f"{1000 * cpu / args.authorizers:.1f} ms cpu each (portal and in-process WeChat), "
        f"outcomes {dict(result.outcomes)} (target < 60 s)"
    )
    return result.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--read-authorizers", type=int, default=100)
    parser.add_argument("--authorizers", type=int, default=10_000)
    parser.add_argument("--sweep-concurrency", type=int, default=16)
    parser.add_argument("--skip", choices=["reads", "sweep"])
    parser.add_argument(
        "--wechat",
        choices=["sandbox", "stub"],
        default="sandbox",
        help="sweep against the sandbox, or a bare stub (the portal's own cost)",
    )
    args, _ = parser.parse_known_args()  # run_all passes every bench the same arguments
    tmp = tempfile.mkdtemp(prefix="bench-tokens-")
    url = args.database_url or f"sqlite:///{tmp}/bench.sqlite"
    print(f"tokens bench: {url.split(':', 1)[0]}, gunicorn gthread {args.workers}x{args.threads}, "
          f"{args.concurrency} clients")  # fmt: skip
    if args.skip != "reads":
        prepare_database(url)
        bench_reads(url, args)
    if args.skip != "sweep":
        bench_sweep(url, args)


if __name__ == "__main__":
    main()
