"""The multi-host path on PostgreSQL + Redis: two gunicorn portals, two RQ workers and `rq cron`.

The sandbox pushes to portal A while the token API is read on portal B; the scheduled jobs
run only through `rq cron app/rq_cron.py` and `flask worker --rq`. One worker is killed with
SIGKILL in the middle of a sweep. Runs whenever TEST_DATABASE_URL is PostgreSQL and Redis
answers (REDIS_URL, else redis://127.0.0.1:6379/6); CI's PostgreSQL run sets both.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select, update

from app.extensions import db
from app.jobs import RQ_QUEUE
from app.models import AuthorizerToken, ComponentCredential, InboxEvent, JobRun
from app.services.custody import apikeys
from app.services.platform import health
from tests import factories
from tests.grants.fleet import seed_portal, seed_sandbox
from tests.operations.conftest import ROBOT_OK

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ACCOUNTS = 240
TICKET_PUSHES = 20
REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/6"
ON_POSTGRES = (os.environ.get("TEST_DATABASE_URL") or "").startswith("postgresql")


def _redis():
    import redis

    connection = redis.Redis.from_url(REDIS_URL)
    try:
        connection.ping()
    except redis.exceptions.ConnectionError:
        if os.environ.get("REDIS_URL"):
            raise  # CI said Redis is there: failing beats skipping
        pytest.skip(f"no Redis at {REDIS_URL}")
    return connection


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not ON_POSTGRES, reason="several processes share PostgreSQL only"),
]


class Processes:
    """Every process this test starts, each in its own session, killed by group at the end."""

    def __init__(self, tmp_path: Path, env: dict):
        self.tmp_path, self.env, self.started = tmp_path, env, []

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = (self.tmp_path / f"{name}.log").open("wb")
        process = subprocess.Popen(
            list(args), cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        process.name = name
        self.started.append(process)
        return process

    def portal(self, name: str, port: int) -> str:
        self.start(
            name, str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "--workers", "1",
            "--threads", "4", "--bind", f"127.0.0.1:{port}", "wsgi:app",
        )  # fmt: skip
        return f"http://127.0.0.1:{port}"

    def worker(self, name: str) -> subprocess.Popen:
        return self.start(name, str(BIN / "flask"), "--app", "wsgi", "worker", "--rq")

    def kill(self, process: subprocess.Popen) -> None:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # the worker and its work-horse child
        except ProcessLookupError:
            pass
        process.wait(10)

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.started:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill(process)

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name} ---\n{(self.tmp_path / f'{p.name}.log').read_text()[-3000:]}"
            for p in self.started
        )


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, processes: Processes):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}\n{processes.logs()}")


def fresh(query):
    db.session.rollback()
    return db.session.execute(query)


def _up(url: str) -> bool:
    try:
        return requests.get(url + "/readyz", timeout=5).status_code in (200, 503)
    except requests.RequestException:
        return False


def _token_rows() -> list[AuthorizerToken]:
    db.session.rollback()
    db.session.expire_all()
    return list(db.session.scalars(select(AuthorizerToken)))


def _sandbox_issued(sandbox) -> tuple[Counter, dict]:
    """Authorizer tokens the sandbox issued per appid, and the newest value of each."""
    from app.sandbox.models import Account, Credential
    from app.sandbox.models import db as sandbox_db

    counts, newest = Counter(), {}
    with sandbox.app.app_context():
        rows = sandbox_db.session.execute(
            select(Account.appid, Credential.value)
            .join(Account, Account.id == Credential.account_id)
            .where(Credential.kind == "authorizer_token")
            .order_by(Credential.id)
        ).all()
    for appid, value in rows:
        counts[appid] += 1
        newest[appid] = value
    return counts, newest


def _runs(name: str) -> int:
    return fresh(select(JobRun.runs).where(JobRun.name == name)).scalar() or 0


def test_two_portals_two_workers_and_cron_on_postgresql_and_redis(app, sandbox, robot, tmp_path):
    from rq import Queue

    connection = _redis()
    Queue(RQ_QUEUE, connection=connection).empty()
    for key in connection.scan_iter("LIMITER*"):
        connection.delete(key)
    robot.default_reply = ROBOT_OK
    merchant = factories.make_merchant()
    rows = seed_sandbox(sandbox, ACCOUNTS)
    seed_portal(db.session, rows, merchant.id)
    _key, secret = apikeys.create_api_key("reader", ["tokens:read", "component_token:read"])
    _limited, limited_secret = apikeys.create_api_key(
        "limited", ["authorizers:read"], rate_limit="5 per minute"
    )
    db.session.commit()
    (tmp_path / "prom").mkdir()
    port_a, port_b = _free_port(), _free_port()
    env = {
        **os.environ,
        "GRANTDESK_CONFIG": "development",
        "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "REDIS_URL": REDIS_URL,
        "RATELIMIT_STORAGE_URI": REDIS_URL,
        "WECHAT_API_BASE": sandbox.url,
        "WECHAT_MP_BASE": sandbox.url,
        "WECHAT_OPEN_BASE": sandbox.url,
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port_a}",
        "GRANTDESK_ALERT_WECOM_URL": robot.url + "/cgi-bin/webhook/send?key=k",
        "GRANTDESK_JOB_INTERVALS": "authorizer_token_sweep=2,alert_notifications=1,"
        "component_token_refresh=2,inbox_retry=5",
        "AUTHORIZER_SWEEP_LEASE_SECONDS": "8",
        "AUTHORIZER_SWEEP_BATCH": "20",
        "AUTHORIZER_SWEEP_CONCURRENCY": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"),
        "GRANTDESK_METRICS_TOKEN": "scrape",
    }
    env.pop("TEST_DATABASE_URL", None)
    processes = Processes(tmp_path, env)
    try:
        portal_a = processes.portal("portal-a", port_a)
        portal_b = processes.portal("portal-b", port_b)
        wait_until(lambda: _up(portal_a) and _up(portal_b), 60, "both portals", processes)
        sandbox.configure(
            event_url=portal_a + "/wechat/events",
            message_url=portal_a + "/wechat/messages/$APPID$",
            initiating_domain=f"127.0.0.1:{port_a}",
        )
        sandbox.push_ticket()
        sandbox.flush()
        # Slow WeChat down a little, so that a sweep is still running when a worker dies.
        sandbox.set_faults(endpoints={"api_authorizer_token": {"latency": 0.05}})

        workers = [processes.worker("worker-1"), processes.worker("worker-2")]
        processes.start("cron", str(BIN / "rq"), "cron", "app/rq_cron.py", "-P", ".",
                        "--url", REDIS_URL)  # fmt: skip

        # The sandbox keeps pushing to A (each push twice) while the workers sweep.
        sandbox.set_faults(
            endpoints={"api_authorizer_token": {"latency": 0.05}}, pushes={"duplicate": True}
        )
        pusher = threading.Thread(
            target=lambda: [sandbox.push_ticket() for _ in range(TICKET_PUSHES)], daemon=True
        )
        pusher.start()

        # Kill -9 a worker (and its work-horse, which runs the job) while it holds leases and
        # some tokens are already stored.
        def sweeping_worker():
            stored = fresh(
                select(func.count()).where(AuthorizerToken.access_token.is_not(None))
            ).scalar()
            if not stored:
                return None
            leased = fresh(
                select(AuthorizerToken.lease_owner).where(AuthorizerToken.lease_owner.is_not(None))
            ).scalars()
            for owner in leased:
                horse = _pid_of(owner)
                for worker in workers:
                    if _parent_of(horse) == worker.pid:
                        return worker, horse
            return None

        victim, horse = wait_until(sweeping_worker, 120, "a worker mid-sweep", processes)
        os.kill(horse, signal.SIGKILL)
        processes.kill(victim)
        in_flight = {
            row.authorizer.appid for row in _token_rows()
            if row.lease_owner and _pid_of(row.lease_owner) == horse
        }  # fmt: skip
        assert in_flight, "the dead worker held leases"
        done = sum(1 for row in _token_rows() if row.access_token)
        assert 0 < done < ACCOUNTS, done
        processes.worker("worker-3")  # a replacement: two workers again

        def all_refreshed():
            found = _token_rows()
            return all(r.access_token and r.lease_owner is None for r in found)

        wait_until(all_refreshed, 180, "every token refreshed", processes)
        pusher.join(60)
        sandbox.flush()

        # Every token refreshed exactly once; no refresh token lost.
        held = {r.authorizer.appid: r for r in _token_rows()}
        assert {appid: r.refresh_token for appid, r in held.items()} == dict(rows)
        issued, newest = _sandbox_issued(sandbox)
        assert {appid: r.access_token for appid, r in held.items()} == newest
        twice = {appid for appid, count in issued.items() if count > 1}
        assert twice <= in_flight, "only a call the dead worker never stored is repeated"
        assert all(issued[appid] == 1 for appid in held if appid not in in_flight)

        # No push lost or processed twice (each was delivered twice).
        tickets = fresh(
            select(InboxEvent.outcome, func.count())
            .where(InboxEvent.info_type == "component_verify_ticket")
            .group_by(InboxEvent.outcome)
        ).all()
        assert dict(tickets) == {"processed": TICKET_PUSHES + 1}
        deliveries = sandbox.deliveries("component_verify_ticket")
        assert len(deliveries) == 2 * TICKET_PUSHES + 1
        assert {d["status"] for d in deliveries} == {"delivered"}

        # The token API read on B serves what custody holds.
        appid = rows[0][0]
        response = requests.get(
            f"{portal_b}/api/v1/authorizers/{appid}/access-token",
            headers={"Authorization": f"Bearer {secret}"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        assert response.json()["access_token"] == held[appid].access_token

        # An API key limited to 5 per minute: the 6th call, on the other process, is refused.
        while time.time() % 60 > 50:  # all six calls inside one fixed one-minute window
            time.sleep(0.5)
        answers = [
            requests.get(
                f"{portal}/api/v1/authorizers",
                headers={"Authorization": f"Bearer {limited_secret}"},
                timeout=10,
            ).status_code
            for portal in (portal_a, portal_b) * 3
        ]
        assert answers == [200, 200, 200, 200, 200, 429], answers

        # An alert opened by portal A is notified once, whichever worker runs the job.
        sandbox.set_faults(clear=True, endpoints={"api_component_token": {"errcode": 61004}})
        fresh(update(ComponentCredential).values(token=None, token_hash=None, expires_at=None))
        db.session.commit()
        response = requests.get(
            f"{portal_a}/api/v1/component/access-token",
            headers={"Authorization": f"Bearer {secret}"},
            timeout=30,
        )
        assert response.status_code == 503, response.text
        assert wait_until(
            lambda: health.IP_NOT_WHITELISTED in {a.kind for a in _active()}, 30, "alert", processes
        )
        runs = _runs("alert_notifications")
        wait_until(lambda: _runs("alert_notifications") >= runs + 6, 60, "job runs", processes)
        opened = [r for r in robot.requests if "Server IP not in the whitelist" in _text(r)]
        assert len(opened) == 1, [_text(r)[:80] for r in robot.requests]
        sandbox.set_faults(clear=True)  # the cron's token refresh recovers and resolves it
        wait_until(lambda: any("resolved" in _text(r) for r in robot.requests), 60,
                   "resolved notice", processes)  # fmt: skip
        runs = _runs("alert_notifications")
        wait_until(lambda: _runs("alert_notifications") >= runs + 4, 60, "job runs", processes)
        assert len(robot.requests) == 2, [_text(r)[:80] for r in robot.requests]

        # Every process's counters are in the scrape of either portal.
        scraped = requests.get(
            portal_b + "/metrics", headers={"Authorization": "Bearer scrape"}, timeout=10
        ).text
        assert 'grantdesk_wechat_api_calls_total{api="api_authorizer_token",errcode="0"}' in scraped
    finally:
        processes.stop_all()
        sandbox.set_faults(clear=True)
        Queue(RQ_QUEUE, connection=connection).empty()


def _pid_of(owner: str) -> int:
    return int(owner.split(":")[1])  # sweep.new_owner(): host:pid:thread:random


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def _active():
    db.session.rollback()
    return health.active_alerts()


def _text(request) -> str:
    return json.loads(request.body)["markdown"]["content"]
