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
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._server import (  # noqa: E402
    Feeder,
    latency_at_rate,
    portal,
    prepare_database,
    start_gunicorn,
    stop,
    throughput,
)


def _pushes(count: int, kind: str) -> list[tuple[str, bytes]]:
    """Pre-sealed pushes (so the client's crypto is not measured): (query, body)."""
    from app.services.platform.platforms import message_crypto
    from app.wechat.events import build_event_xml

    out = []
    with portal("sqlite://").app_context():
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


def poster(base: str, path: str, feeder: Feeder):
    """send(session) for the load shapes: the next push to `path`, ok when answered `success`."""

    def send(session) -> bool:
        query, body = feeder.next()
        response = session.post(f"{base}{path}?{query}", data=body, timeout=30)
        return response.status_code == 200 and response.content == b"success"

    return send


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--kind", choices=["ticket", "other"], default="ticket")
    args, _ = parser.parse_known_args()  # run_all passes every bench the same arguments
    tmp = tempfile.mkdtemp(prefix="bench-intake-")
    url = args.database_url or f"sqlite:///{tmp}/bench.sqlite"
    prepare_database(url)
    n = int(args.seconds * 2000 + args.rate * args.seconds * 2 + 100)
    feeder = Feeder(_pushes(n, args.kind))
    proc, base = start_gunicorn(
        "bench._server:portal_with_bare_success()",
        url,
        args.workers,
        args.threads,
        probe=("POST", "/bench/bare"),
    )
    try:
        rows = []
        for label, path in (
            ("bare success", "/bench/bare"),
            ("POST /wechat/events", "/wechat/events"),
        ):
            print(f"measuring {label} ...", file=sys.stderr, flush=True)
            send = poster(base, path, feeder)
            rps, errs = throughput(send, args.concurrency, args.seconds)
            p50, p99, lerrs = latency_at_rate(send, args.rate, args.seconds)
            rows.append((label, rps, p50, p99, errs + lerrs))
    finally:
        stop(proc)
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

    from app.extensions import db
    from app.models import InboxEvent

    with portal(url).app_context():
        query = select(InboxEvent.outcome, func.count()).group_by(InboxEvent.outcome)
        return dict(db.session.execute(query).all())


if __name__ == "__main__":
    main()
