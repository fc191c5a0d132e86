"""Event intake under gunicorn (gthread): POST /wechat/events against a bare `success` endpoint.

Both endpoints are served by the same gunicorn process in the same run, so the ratio is
meaningful on any machine. Two measurements per endpoint:

- throughput: closed loop, --concurrency clients posting as fast as they can for --seconds;
- latency at a fixed rate: open loop at --rate requests/s for --seconds, p50/p99.

    .venv/bin/python bench/bench_intake.py                       # SQLite file
    .venv/bin/python bench/bench_intake.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def wsgi_app():
    """gunicorn entry (`bench.bench_intake:wsgi_app()`): the portal plus a bare endpoint."""
    from flask import Response

    from app import create_app
    from app.extensions import csrf

    app = create_app(
        {
            "ENV_NAME": "development",
            "DEBUG": False,
            "SQLALCHEMY_DATABASE_URI": os.environ["BENCH_DATABASE_URL"],
        }
    )

    @app.post("/bench/bare")
    @csrf.exempt
    def bare():
        return Response("success", mimetype="text/plain")

    return app


def _prepare_database(url: str) -> None:
    from app import create_app
    from app.extensions import db

    app = create_app({"ENV_NAME": "development", "SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        db.drop_all()
        db.create_all()
        db.engine.dispose()


def _pushes(count: int, kind: str) -> list[tuple[str, bytes]]:
    """Pre-sealed pushes (so the client's crypto is not measured): (query, body)."""
    from app import create_app
    from app.extensions import message_crypto
    from app.wechat.events import build_event_xml

    app = create_app({"ENV_NAME": "development", "SQLALCHEMY_DATABASE_URI": "sqlite://"})
    out = []
    with app.app_context():
        crypto = message_crypto()
        for n in range(count):
            fields = {"AppId": crypto.appid, "CreateTime": 1_700_000_000 + n}
            if kind == "ticket":
                fields["ComponentVerifyTicket"] = f"ticket@@@{uuid.uuid4().hex}"
                inner = build_event_xml("component_verify_ticket", fields)
            else:
                fields["AuthorizerAppid"] = f"wx{uuid.uuid4().hex[:16]}"
                inner = build_event_xml("notify_bench_event", fields)
            timestamp, nonce = str(int(time.time())), str(n)
            body, signature = crypto.encrypt_message(inner, timestamp, nonce)
            query = urlencode({"timestamp": timestamp, "nonce": nonce, "msg_signature": signature})
            out.append((query, body.encode()))
    return out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_gunicorn(url: str, workers: int, threads: int) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "BENCH_DATABASE_URL": url, "GRANTDESK_CONFIG": "development"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-k",
            "gthread",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "-b",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            "bench.bench_intake:wsgi_app()",
        ],
        cwd=ROOT,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            requests.post(base + "/bench/bare", timeout=10)
            return proc, base
        except requests.RequestException:  # not listening yet, or a worker still booting
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("gunicorn did not start")


class Feeder:
    """Hands out distinct pushes to client threads."""

    def __init__(self, pushes):
        self._pushes, self._i, self._lock = pushes, 0, threading.Lock()

    def next(self):
        with self._lock:
            self._i += 1
            return self._pushes[self._i % len(self._pushes)]


def _post(session, base, path, feeder):
    query, body = feeder.next()
    started = time.perf_counter()
    response = session.post(f"{base}{path}?{query}", data=body, timeout=30)
    elapsed = time.perf_counter() - started
    return elapsed, response.status_code == 200 and response.content == b"success"


def throughput(base, path, feeder, concurrency, seconds) -> tuple[float, int]:
    stop = time.perf_counter() + seconds
    counts, errors = [0] * concurrency, [0] * concurrency

    def client(i):
        session = requests.Session()
        while time.perf_counter() < stop:
            _, ok = _post(session, base, path, feeder)
            counts[i] += ok
            errors[i] += not ok

    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - started), sum(errors)


def latency_at_rate(base, path, feeder, rate, seconds) -> tuple[float, float, int]:
    sessions = threading.local()
    latencies, errors = [], [0]

    def one():
        if not hasattr(sessions, "s"):
            sessions.s = requests.Session()
        elapsed, ok = _post(sessions.s, base, path, feeder)
        latencies.append(elapsed)
        errors[0] += not ok

    with ThreadPoolExecutor(max_workers=64) as pool:
        start = time.perf_counter()
        for n in range(int(rate * seconds)):
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one)
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    return pick(0.50), pick(0.99), errors[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--kind", choices=["ticket", "other"], default="ticket")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-intake-")
    url = args.database_url or f"sqlite:///{tmp}/bench.sqlite"
    _prepare_database(url)
    n = int(args.seconds * 2000 + args.rate * args.seconds * 2 + 100)
    feeder = Feeder(_pushes(n, args.kind))
    proc, base = _start_gunicorn(url, args.workers, args.threads)
    try:
        rows = []
        for label, path in (
            ("bare success", "/bench/bare"),
            ("POST /wechat/events", "/wechat/events"),
        ):
            print(f"measuring {label} ...", file=sys.stderr, flush=True)
            rps, errs = throughput(base, path, feeder, args.concurrency, args.seconds)
            p50, p99, lerrs = latency_at_rate(base, path, feeder, args.rate, args.seconds)
            rows.append((label, rps, p50, p99, errs + lerrs))
    finally:
        proc.terminate()
        proc.wait(10)
    backend = url.split(":", 1)[0]
    print(
        f"intake bench: {backend}, gunicorn gthread {args.workers}x{args.threads}, "
        f"{args.concurrency} clients, {args.kind} pushes, {args.rate:g}/s for latency"
    )
    print(f"{'endpoint':<22}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    for label, rps, p50, p99, errs in rows:
        print(f"{label:<22}{rps:>10.0f}{p50:>10.1f}{p99:>10.1f}{errs:>8}")
    print(
        f"ratio events/bare throughput: {rows[1][1] / rows[0][1]:.2f} (target >= 0.5); "
        f"p99 at {args.rate:g}/s: {rows[1][3]:.1f} ms (target < 50)"
    )
    print("inbox outcomes: " + ", ".join(f"{k}={v}" for k, v in _outcomes(url).items()))


def _outcomes(url: str) -> dict[str, int]:
    """What the stored pushes became: a fast reply that left events failed is no success."""
    from sqlalchemy import func, select

    from app import create_app
    from app.extensions import db
    from app.models import InboxEvent

    app = create_app({"ENV_NAME": "development", "SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        query = select(InboxEvent.outcome, func.count()).group_by(InboxEvent.outcome)
        return dict(db.session.execute(query).all())


if __name__ == "__main__":
    main()
