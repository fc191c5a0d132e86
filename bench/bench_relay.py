"""Message relay (issue #15): intake to an async route, reply-mode overhead, outbox drain.

One run, one database, one gunicorn (gthread) serving the portal and a bare `POST /bench/bare`
that answers `success` (the baseline), and one local business service in its own process
(stdlib HTTP/1.1 server, no Grantdesk code) with two handlers:

- `/async`: the json route's receiver; checks X-Grantdesk-Signature and notes each arrival;
- `/reply`: a wechat-xml handler as written for WeChat's plaintext mode (checks `signature`,
  parses the XML, answers a text reply) that notes its own service time per MsgId.

Measured, as ratios and percentiles from the same run:

1. intake: encrypted user messages (distinct MsgIds, --accounts active accounts in the async
   route's merchant) to `/wechat/messages/<appid>`: closed-loop throughput against the bare
   endpoint (target >= 0.5), then open-loop p50/p99 at --rate/s (target p99 < 50 ms); gunicorn's
   CPU per request;
2. reply mode: messages for accounts behind the reply route at --reply-rate/s, then the same
   messages in plaintext straight to the handler at the same rate (the baseline: the one HTTP hop
   WeChat would make without Grantdesk). The latency Grantdesk adds, per message = end-to-end
   time at the bench - the handler's own service time (from the request's headers read to its
   reply written) - the baseline hop's median cost beyond the handler's own time (target p99 <
   10 ms); every reply is decrypted and checked;
3. outbox drain: gunicorn stopped, the pending async deliveries (topped up to --drain through
   the real intake, spread over the --accounts accounts) drained to the receiver by the outbox
   job (`deliver_due`) back to back in one process with the default settings (target >= 500/s on
   PostgreSQL); arrivals are checked for order per account and for duplicates.

The web workers' outbox wake-up is off during intake unless --wake: intake and delivery are then
measured apart, and a deployment's CPU per message is their sum.

    .venv/bin/python bench/bench_relay.py                       # SQLite file, 1.5-3 minutes
    .venv/bin/python bench/bench_relay.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench
    .venv/bin/python bench/bench_relay.py --quick               # 2 s phases, 1,000 to drain

The database is dropped and recreated first (use a throwaway PostgreSQL database).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import multiprocessing
import os
import secrets
import sys
import tempfile
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import requests
from defusedxml.ElementTree import fromstring

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._server import (  # noqa: E402
    Feeder,
    at_rate,
    cpu_seconds,
    free_port,
    percentile,
    portal,
    prepare_database,
    start_gunicorn,
    stop,
    throughput,
)

REPLY_ACCOUNTS = 20  # accounts behind the reply route (their own merchant)
OPENID = "o6_bmjrPTlm6_2sgVt7hMZOPfL2M"


# --- the business service (a separate process; no Grantdesk code) ---------------------------


class Receiver(BaseHTTPRequestHandler):
    """The provider's service behind both routes; state lives on the server object."""

    protocol_version = "HTTP/1.1"  # keep-alive, as any production HTTP server
    disable_nagle_algorithm = True

    def log_message(self, *args):  # quiet
        pass

    def do_POST(self):
        started = time.perf_counter()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        parts = urlsplit(self.path)
        if parts.path == "/async":
            status, answer = self._arrival(body), b"ok"
        elif parts.path == "/reply":
            status, answer, msg_id = self._reply(parse_qs(parts.query), body)
        else:
            status, answer = 404, b"not found"
        self._answer(status, answer)
        if parts.path == "/reply" and status == 200:
            with self.server.lock:
                self.server.reply_times[msg_id] = time.perf_counter() - started

    def do_GET(self):
        with self.server.lock:
            stats = {
                "arrivals": self.server.arrivals,
                "bad": self.server.bad,
                "reply_times": self.server.reply_times,
            }
            self._answer(200, json.dumps(stats).encode(), "application/json")

    def _answer(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        head = (
            f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.wfile.write(head.encode() + body)  # one write: no Nagle/delayed-ACK stall

    def _arrival(self, body: bytes) -> int:
        """json route: check the signature like the grant webhooks, note (appid, time, id)."""
        timestamp = self.headers.get("X-Grantdesk-Timestamp", "")
        mac = hmac.new(self.server.secret.encode(), timestamp.encode() + b"." + body, "sha256")
        if not hmac.compare_digest("sha256=" + mac.hexdigest(), self.headers.get(
                "X-Grantdesk-Signature", "")):  # fmt: skip
            with self.server.lock:
                self.server.bad += 1
            return 401
        document = json.loads(body)
        message = document["message"]
        arrival = (document["authorizer_appid"], int(message["CreateTime"]), message["MsgId"])
        with self.server.lock:
            self.server.arrivals.append(arrival)
        return 200

    def _reply(self, query: dict, body: bytes) -> tuple[int, bytes, str]:
        """wechat-xml handler, plaintext mode: check `signature`, answer a text reply."""
        timestamp, nonce = query["timestamp"][0], query["nonce"][0]
        expected = hashlib.sha1("".join(sorted([self.server.token, timestamp, nonce])).encode())
        if not hmac.compare_digest(expected.hexdigest(), query["signature"][0]):
            with self.server.lock:
                self.server.bad += 1
            return 403, b"bad signature", ""
        fields = {child.tag: child.text or "" for child in fromstring(body)}
        reply = (
            f"<xml><ToUserName><![CDATA[{fields['FromUserName']}]]></ToUserName>"
            f"<FromUserName><![CDATA[{fields['ToUserName']}]]></FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[re: {fields['Content']}]]></Content></xml>"
        )
        return 200, reply.encode(), fields["MsgId"]


class ReceiverServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # many connections open at once


def serve_receiver(port: int, token: str, secret: str) -> None:
    server = ReceiverServer(("127.0.0.1", port), Receiver)
    server.token, server.secret, server.lock = token, secret, threading.Lock()
    server.arrivals, server.bad, server.reply_times = [], 0, {}
    server.serve_forever()


def start_receiver(token: str, secret: str):
    """The business service in its own process (its CPU is not the bench's GIL); (proc, base)."""
    port = free_port()
    proc = multiprocessing.get_context("spawn").Process(
        target=serve_receiver, args=(port, token, secret), daemon=True
    )
    proc.start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            requests.get(base + "/stats", timeout=5)
            return proc, base
        except requests.RequestException:
            time.sleep(0.05)
    raise SystemExit("receiver did not start")


def receiver_stats(base: str) -> dict:
    return requests.get(base + "/stats", timeout=30).json()


# --- the portal's side: accounts, routes, sealed messages -----------------------------------


def seed(app, accounts: int, receiver: str, token: str, secret: str) -> tuple[list, list]:
    """Active accounts in two merchants, an async json route for the first and a reply
    wechat-xml route for the second; returns ([(appid, user_name)] async, ... reply)."""
    from app.extensions import db
    from app.models import Authorizer, Grant, Merchant
    from app.services.relay import routes

    with app.app_context():
        async_merchant, reply_merchant = Merchant(name="bench async"), Merchant(name="bench reply")
        db.session.add_all([async_merchant, reply_merchant])
        db.session.flush()
        out: dict[str, list] = {"a": [], "r": []}
        for kind, merchant, count in (
            ("a", async_merchant, accounts),
            ("r", reply_merchant, REPLY_ACCOUNTS),
        ):
            for n in range(count):
                authorizer = Authorizer(
                    appid=f"wxrelay{kind}{n:09d}",
                    user_name=f"gh_relay{kind}{n:06d}",
                    merchant_id=merchant.id,
                    account_type="official_account",
                    nick_name=f"bench {kind}{n}",
                )
                authorizer.grant = Grant(set_ids=[1, 2])
                db.session.add(authorizer)
                out[kind].append((authorizer.appid, authorizer.user_name))
        db.session.commit()
        routes.create_route(name="bench async", url=f"{receiver}/async", format="json",
                            mode="async", secret=secret, merchant_id=async_merchant.id)  # fmt: skip
        routes.create_route(name="bench reply", url=f"{receiver}/reply", format="wechat-xml",
                            mode="reply", token=token, merchant_id=reply_merchant.id)  # fmt: skip
        db.session.commit()
    return out["a"], out["r"]


def seal(app, accounts: list, count: int, first_msg_id: int) -> list[tuple[str, bytes, str]]:
    """`count` text messages round-robin over `accounts`, encrypted and signed as WeChat sends
    them (the client's crypto is not measured): (path with query, body, MsgId). CreateTime grows
    per account, so the drain's order per account can be checked."""
    from app.services.platform.platforms import message_crypto
    from app.wechat.events import build_message_xml

    out = []
    base_time = int(time.time())
    with app.app_context():
        crypto = message_crypto()
        for n in range(count):
            appid, user_name = accounts[n % len(accounts)]
            msg_id = str(first_msg_id + n)
            inner = build_message_xml(user_name, OPENID, base_time + n // len(accounts), "text",
                                      Content=f"hello {n}", MsgId=int(msg_id))  # fmt: skip
            timestamp, nonce = str(int(time.time())), str(secrets.randbelow(10**10))
            body, msg_signature = crypto.encrypt_message(
                inner, timestamp, nonce, to_user_name=user_name
            )
            query = urlencode({"signature": crypto.url_signature(timestamp, nonce),
                               "timestamp": timestamp, "nonce": nonce, "openid": OPENID,
                               "encrypt_type": "aes", "msg_signature": msg_signature})  # fmt: skip
            out.append((f"/wechat/messages/{appid}?{query}", body.encode(), msg_id))
    return out


def poster(base: str, feeder: Feeder, *, path: str | None = None):
    """send(session): the next sealed message (to `path` instead, for the bare baseline); ok
    when answered `success`."""

    def send(session) -> bool:
        target, body, _ = feeder.next()
        response = session.post(base + (path or target), data=body, timeout=30)
        return response.status_code == 200 and response.content == b"success"

    return send


def replier(base: str, feeder: Feeder):
    """send(session) for reply mode: (MsgId, reply) when answered with XML (encrypted through
    Grantdesk, plaintext from the handler directly)."""

    def send(session):
        target, body, msg_id = feeder.next()
        response = session.post(base + target, data=body, timeout=30)
        if response.status_code == 200 and response.content.startswith(b"<xml"):
            return msg_id, response.content
        return None

    return send


def plain(accounts: list, count: int, first_msg_id: int, token: str):
    """The baseline's requests: text messages in WeChat's plaintext mode, as WeChat would POST
    them to the handler directly: (path with query, body, MsgId)."""
    from app.wechat.events import build_message_xml

    out = []
    for n in range(count):
        _, user_name = accounts[n % len(accounts)]
        msg_id = str(first_msg_id + n)
        inner = build_message_xml(user_name, OPENID, int(time.time()), "text",
                                  Content=f"hello {n}", MsgId=int(msg_id))  # fmt: skip
        timestamp, nonce = str(int(time.time())), str(secrets.randbelow(10**10))
        signature = hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()
        query = urlencode({"signature": signature, "timestamp": timestamp, "nonce": nonce,
                           "openid": OPENID})  # fmt: skip
        out.append((f"/reply?{query}", inner.encode(), msg_id))
    return out


def check_replies(app, samples: list) -> int:
    """Decrypt every reply the bench got: the handler's text, addressed to the user."""
    from app.services.platform.platforms import message_crypto

    bad = 0
    with app.app_context():
        crypto = message_crypto()
        for _, result in samples:
            if result:
                xml = crypto.open_reply(result[1])
                bad += f"<ToUserName><![CDATA[{OPENID}]]>" not in xml or "re: hello" not in xml
    return bad


def relay_counts(app) -> dict[str, int]:
    from sqlalchemy import func, select

    from app.extensions import db
    from app.models.relay import RelayDelivery, RelayMessage

    with app.app_context():
        query = select(RelayDelivery.mode, RelayDelivery.status, func.count()).group_by(
            RelayDelivery.mode, RelayDelivery.status
        )
        counts = {f"{mode} {status}": n for mode, status, n in db.session.execute(query)}
        counts["messages"] = db.session.scalar(select(func.count()).select_from(RelayMessage))
    return counts


def drain(app) -> dict:
    """Run the outbox job back to back until nothing is due, as one worker process does with the
    default settings (RELAY_OUTBOX_CONCURRENCY senders): deliveries, seconds, CPU per delivery
    (this process: claims, requests and outcome writes), what is left pending."""
    from sqlalchemy import func, select

    from app.extensions import db
    from app.models.relay import RelayDelivery
    from app.services.relay import outbox

    with app.app_context(), timing_turns(outbox) as turns, counting_sql(app) as sql:
        delivered, cpu, started = 0, time.process_time(), time.perf_counter()
        while sent := outbox.deliver_due():
            delivered += sent
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        left = db.session.scalar(
            select(func.count()).where(
                RelayDelivery.mode == "async", RelayDelivery.status == "pending"
            )
        )
        db.session.commit()
    turn_ms = None
    if turns is not None:
        turn_ms = (turns["_claim"] - turns["_requests_for"] + turns["_record"]) * 1000
    return {"delivered": delivered, "seconds": seconds, "left": left, "sql": per(sql, delivered),
            "cpu_ms": cpu * 1000 / max(1, delivered), "rate": delivered / seconds,
            "turn_ms": turn_ms and turn_ms / max(1, delivered)}  # fmt: skip


@contextmanager
def timing_turns(outbox):
    """Time the outbox spends in its turn: its claims and outcome writes take turns on one lock
    across every process and host (SQLite: its one writer), so that time per delivery bounds the
    whole deployment's drain. Reads outbox internals (claim minus building the requests, plus
    the writes); yields None when they are not there."""
    names = ("_claim", "_requests_for", "_record")
    if not all(callable(getattr(outbox, name, None)) for name in names):
        yield None
        return
    spent = dict.fromkeys(names, 0.0)
    originals = {name: getattr(outbox, name) for name in names}

    def timed(name):
        def call(*args, **kwargs):
            started = time.perf_counter()
            try:
                return originals[name](*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - started

        return call

    try:
        for name in names:
            setattr(outbox, name, timed(name))
        yield spent
    finally:
        for name, original in originals.items():
            setattr(outbox, name, original)


def check_order(arrivals: list) -> tuple[int, int]:
    """(order violations per account, duplicate MsgIds) among the receiver's arrivals."""
    last: dict[str, int] = defaultdict(int)
    seen: set[str] = set()
    disorder = duplicates = 0
    for appid, create_time, msg_id in arrivals:
        disorder += create_time < last[appid]
        last[appid] = max(last[appid], create_time)
        duplicates += msg_id in seen
        seen.add(msg_id)
    return disorder, duplicates


# --- the run ---------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument("--seconds", type=float, default=5, help="per measurement")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rate", type=float, default=200, help="intake latency: messages/s")
    parser.add_argument("--reply-rate", type=float, default=50, help="reply mode: messages/s")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--accounts", type=int, default=200, help="behind the async route")
    parser.add_argument("--drain", type=int, default=5000, help="pending deliveries to drain")
    parser.add_argument("--quick", action="store_true", help="2 s phases, 1,000 to drain")
    parser.add_argument("--skip", action="append", default=[], choices=["reply", "drain"])
    parser.add_argument("--wake", action="store_true",
                        help="keep the web workers' outbox wake-up on during intake (default: "
                             "off, so that intake and delivery are measured apart)")  # fmt: skip
    args, _ = parser.parse_known_args()  # run_all passes every bench the same arguments
    if args.quick:
        args.seconds, args.drain = min(args.seconds, 2), min(args.drain, 1000)
    tmp = tempfile.mkdtemp(prefix="bench-relay-")
    url = args.database_url or f"sqlite:///{tmp}/bench.sqlite"
    backend = url.split(":", 1)[0]
    token, secret = secrets.token_hex(16), secrets.token_hex(32)

    print(f"preparing {backend} ...", file=sys.stderr, flush=True)
    prepare_database(url)
    receiver_proc, receiver = start_receiver(token, secret)
    # The bench's own app queues the drain's backlog through the real intake, with no wake-up.
    app = portal(url, RELAY_OUTBOX_WAKE=False)
    async_accounts, reply_accounts = seed(app, args.accounts, receiver, token, secret)
    warm = 1.0
    async_count = int((args.seconds + warm) * 1500 + args.rate * args.seconds + args.drain + 500)
    async_feeder = Feeder(seal(app, async_accounts, async_count, 10**15))
    reply_count = int(args.reply_rate * (args.seconds + warm)) + 100
    reply_feeder = Feeder(seal(app, reply_accounts, reply_count, 2 * 10**15))
    print(
        f"relay bench: {backend}, gunicorn gthread {args.workers}x{args.threads}, "
        f"{args.concurrency} clients, {args.accounts} accounts on the async route, "
        f"outbox wake-up in the web workers {'on' if args.wake else 'off'}"
    )
    proc, base = start_gunicorn("bench._server:portal_with_bare_success()", url, args.workers,
                                args.threads, probe=("POST", "/bench/bare"),
                                env={"RELAY_OUTBOX_WAKE": str(args.wake).lower()})  # fmt: skip
    try:
        intake = measure_intake(base, proc.pid, app, async_feeder, args, warm)
        if "reply" not in args.skip:
            print("measuring reply mode ...", file=sys.stderr, flush=True)
            at_rate(replier(base, reply_feeder), args.reply_rate, warm)
            cpu = cpu_seconds(proc.pid)
            reply = at_rate(replier(base, reply_feeder), args.reply_rate, args.seconds)
            reply_cpu_ms = (cpu_seconds(proc.pid) - cpu) * 1000 / len(reply)
            direct_feeder = Feeder(plain(reply_accounts, reply_count, 3 * 10**15, token))
            at_rate(replier(receiver, direct_feeder), args.reply_rate, warm)
            baseline = at_rate(replier(receiver, direct_feeder), args.reply_rate, args.seconds)
        if args.wake:
            settle(app)  # let the web workers' outbox finish what it holds before they stop
    finally:
        stop(proc)
    if async_feeder.used > len(async_feeder._items):
        print("WARNING: the sealed messages ran out (retries were measured): raise the count")
    stats = receiver_stats(receiver)
    counts = relay_counts(app)
    print(
        f"relay rows after the gunicorn phases: {counts}; delivered to the receiver meanwhile "
        f"(the web workers' outbox): {len(stats['arrivals'])}"
    )
    if "reply" not in args.skip:
        report_reply(app, reply, baseline, stats["reply_times"], args.reply_rate, reply_cpu_ms)
    drained = None
    if "drain" not in args.skip:
        # At least a few through this process: its database work per message is reported.
        queued = max(100, args.drain - counts.get("async pending", 0))
        print(f"queueing {queued} more async messages ...", file=sys.stderr, flush=True)
        queue_backlog(app, async_feeder, queued)
        analyze(app)
        print("draining ...", file=sys.stderr, flush=True)
        before = len(stats["arrivals"])
        drained = drain(app)
        stats = receiver_stats(receiver)
        # Order is checked within the drain (all its messages were stored before it began);
        # duplicates over the whole run.
        disorder, _ = check_order(stats["arrivals"][before:])
        _, duplicates = check_order(stats["arrivals"])
        print(
            f"outbox drain: {drained['delivered']} deliveries over {args.accounts} accounts in "
            f"{drained['seconds']:.1f} s = {drained['rate']:.0f}/s (target >= 500/s on "
            f"PostgreSQL), {drained['cpu_ms']:.2f} ms cpu each; receiver got "
            f"{len(stats['arrivals']) - before}, {drained['left']} still pending, "
            f"{disorder} out of order, {duplicates} duplicates, {stats['bad']} bad signatures"
        )
        if drained["turn_ms"] is not None:
            print(f"outbox turn (claims and outcome writes, one at a time across all processes "
                  f"and hosts): {drained['turn_ms']:.2f} ms per delivery, a ceiling of "
                  f"{1000 / drained['turn_ms']:.0f} deliveries/s at these batch sizes")  # fmt: skip
        print(f"database work per delivery: {drained['sql']}")
    receiver_proc.terminate()
    print_storage(app)
    print_capacity(intake, None if args.wake else drained, os.cpu_count() or 1)


def measure_intake(base: str, pid: int, app, feeder: Feeder, args, warm: float) -> dict:
    """Bare endpoint, then the async route's messages: closed-loop throughput (with gunicorn's
    CPU per request), then open-loop latency at --rate. Prints the rows; returns the messages'
    figures."""
    print("measuring intake ...", file=sys.stderr, flush=True)
    # The bare endpoint ignores what it is sent: a few sealed messages over and over.
    bare = poster(base, Feeder(feeder._items[:100]), path="/bench/bare")
    relay = poster(base, feeder)
    throughput(bare, args.concurrency, warm)
    throughput(relay, args.concurrency, warm)
    rows = []
    for label, send in (("bare success", bare), ("POST /wechat/messages", relay)):
        cpu = cpu_seconds(pid)
        rps, errors = throughput(send, args.concurrency, args.seconds)
        done = rps * args.seconds
        cpu_ms = (cpu_seconds(pid) - cpu) * 1000 / done
        samples = at_rate(send, args.rate, args.seconds)
        times = [elapsed * 1000 for elapsed, _ in samples]
        errors += sum(1 for _, ok in samples if not ok)
        rows.append({"label": label, "rps": rps, "cpu_ms": cpu_ms,
                     "p50": percentile(times, 0.5), "p99": percentile(times, 0.99),
                     "errors": errors})  # fmt: skip
    print(f"{'endpoint':<24}{'req/s':>9}{'cpu ms':>8}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
          f"   (cpu: gunicorn's, per request; latencies at {args.rate:g}/s)")  # fmt: skip
    for row in rows:
        print(f"{row['label']:<24}{row['rps']:>9.0f}{row['cpu_ms']:>8.2f}{row['p50']:>9.1f}"
              f"{row['p99']:>9.1f}{row['errors']:>8}")  # fmt: skip
    bare_row, relay_row = rows
    print(
        f"intake ratio messages/bare: {relay_row['rps'] / bare_row['rps']:.2f} (target >= 0.5); "
        f"p99 at {args.rate:g}/s: {relay_row['p99']:.1f} ms (target < 50)"
    )
    return relay_row


@contextmanager
def counting_sql(app):
    """Count what this process asks of the database meanwhile: connection checkouts (each a
    pre-ping round trip), statements and commits (SQLAlchemy engine events)."""
    from sqlalchemy import event

    from app.extensions import db

    with app.app_context():
        engine = db.engine
    counts = {"checkouts": 0, "statements": 0, "commits": 0}

    def checkout(*_):
        counts["checkouts"] += 1

    def statement(*_):
        counts["statements"] += 1

    def commit(*_):
        counts["commits"] += 1

    hooks = (("checkout", checkout), ("before_cursor_execute", statement), ("commit", commit))
    for name, hook in hooks:
        event.listen(engine, name, hook)
    try:
        yield counts
    finally:
        for name, hook in hooks:
            event.remove(engine, name, hook)


def per(counts: dict[str, int], n: int) -> str:
    return ", ".join(f"{value / max(1, n):.2f} {name}" for name, value in counts.items())


def settle(app, *, quiet_for: float = 1.0, at_most: float = 15.0) -> None:
    """Wait until the async deliveries stop changing (the web workers' drainers are idle)."""
    last, since, give_up = None, time.perf_counter(), time.perf_counter() + at_most
    while time.perf_counter() < give_up:
        now = relay_counts(app)
        if now != last:
            last, since = now, time.perf_counter()
        elif time.perf_counter() - since >= quiet_for:
            return
        time.sleep(0.2)


def queue_backlog(app, feeder: Feeder, count: int) -> None:
    """`count` more async messages through the real intake (in this process: the WSGI app, no
    HTTP, no outbox wake-up), so the drain has its backlog."""
    client = app.test_client()
    with counting_sql(app) as sql:
        for _ in range(count):
            target, body, _ = feeder.next()
            response = client.post(target, data=body)
            if response.data != b"success":
                raise SystemExit(f"queueing failed: HTTP {response.status_code}")
    print(f"database work per async message (intake): {per(sql, count)}")


def analyze(app) -> None:
    """Planner statistics for the freshly filled relay tables, as autovacuum keeps them in
    production (a fresh PostgreSQL table has none)."""
    from sqlalchemy import text

    from app.extensions import db

    with app.app_context():
        db.session.execute(text("ANALYZE relay_deliveries"))
        db.session.execute(text("ANALYZE relay_messages"))
        db.session.commit()


def print_storage(app) -> None:
    """PostgreSQL bytes per stored message (tables, indexes and TOAST of both relay tables),
    for the retention arithmetic; nothing on SQLite."""
    from sqlalchemy import text

    from app.extensions import db

    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            return
        size, messages = db.session.execute(text(
            "SELECT pg_total_relation_size('relay_messages') "
            "+ pg_total_relation_size('relay_deliveries'), "
            "(SELECT count(*) FROM relay_messages)")).one()  # fmt: skip
        db.session.commit()
    print(f"storage: {size / max(1, messages):.0f} bytes per message with its delivery "
          f"({messages} messages, tables and indexes)")  # fmt: skip


def print_capacity(intake: dict, drained: dict | None, cores: int) -> None:
    """The arithmetic behind bench/README.md's capacity section, with this run's figures: CPU
    per message on the web side, intake plus delivery (`drained` None: intake's CPU already
    includes the web workers' deliveries)."""
    need = 100_000 / 60
    cpu_ms = intake["cpu_ms"] + (drained["cpu_ms"] if drained else 0)
    cores_needed = need * cpu_ms / 1000
    print(
        f"capacity: 100,000 accounts x 1 message/min = {need:,.0f} messages/s; web-side cpu "
        f"{intake['cpu_ms']:.2f} ms intake"
        + (f" + {drained['cpu_ms']:.2f} ms delivery" if drained else "")
        + f" per message = {cores_needed:.1f} cores busy (database and receiver not included); "
        f"this {cores}-core machine, sharing its cores with the load generator and the "
        f"database, took {intake['rps']:.0f} messages/s"
        + (f" and drained {drained['rate']:.0f}/s" if drained else "")
    )


def report_reply(
    app, samples: list, baseline: list, handler_times: dict, rate: float, cpu_ms: float
) -> None:
    """Added latency per message: end to end at the bench - the handler's own service time -
    the median cost of the one hop WeChat makes anyway (the baseline, beyond the handler)."""
    beyond = lambda rows: [  # noqa: E731  (ms beyond the handler's own time, per answered message)
        (elapsed - handler_times[result[0]]) * 1000
        for elapsed, result in rows
        if result and result[0] in handler_times
    ]
    via, hop = beyond(samples), beyond(baseline)
    ends = [elapsed * 1000 for elapsed, result in samples if result]
    handler = [handler_times[r[0]] * 1000 for _, r in samples if r and r[0] in handler_times]
    hop_p50 = percentile(hop, 0.5)
    added = [value - hop_p50 for value in via]
    errors = len(samples) - len(via)
    wrong = check_replies(app, samples)
    print(
        f"reply mode at {rate:g}/s: {len(via)} replies, {errors} errors, {wrong} wrong; "
        f"end to end p50 {percentile(ends, 0.5):.1f} / p99 {percentile(ends, 0.99):.1f} ms, "
        f"handler p50 {percentile(handler, 0.5):.2f} / p99 {percentile(handler, 0.99):.2f} ms; "
        f"gunicorn cpu {cpu_ms:.2f} ms per message"
    )
    print(
        f"baseline, the handler called directly at {rate:g}/s ({len(hop)} replies, "
        f"{len(baseline) - len(hop)} errors): the hop beyond the handler's own time p50 "
        f"{hop_p50:.2f} / p99 {percentile(hop, 0.99):.2f} ms"
    )
    print(
        f"reply mode added by Grantdesk: p50 {percentile(added, 0.5):.1f} ms, "
        f"p99 {percentile(added, 0.99):.1f} ms (target p99 < 10); without the baseline "
        f"subtracted p50 {percentile(via, 0.5):.1f} / p99 {percentile(via, 0.99):.1f} ms"
    )


if __name__ == "__main__":
    main()
