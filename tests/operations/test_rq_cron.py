"""`rq cron app/rq_cron.py` enqueues every registered job, and an RQ worker runs each of them."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from app import jobs
from app.extensions import db
from app.models import JobRun

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/6"


@pytest.fixture
def redis_connection():
    redis = pytest.importorskip("redis")
    connection = redis.Redis.from_url(REDIS_URL)
    try:
        connection.ping()
    except redis.exceptions.ConnectionError:
        if os.environ.get("REDIS_URL"):
            raise
        pytest.skip(f"no Redis at {REDIS_URL}")
    return connection


def test_rq_cron_enqueues_every_job_and_a_worker_runs_them(
    app, live_portal, redis_connection, tmp_path, monkeypatch
):
    from rq import Queue, SimpleWorker

    queue = Queue(jobs.RQ_QUEUE, connection=redis_connection)
    queue.empty()
    env = {
        **os.environ,
        "GRANTDESK_CONFIG": "test",
        "TEST_DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
    }
    log = (tmp_path / "cron.log").open("wb")
    cron = subprocess.Popen(
        [str(Path(sys.executable).parent / "rq"), "cron", "app/rq_cron.py", "-P", ".",
         "--url", REDIS_URL],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    wanted = {job.name for job in jobs.JOBS}
    try:
        deadline = time.monotonic() + 60
        while {job.args[0] for job in queue.get_jobs()} != wanted:
            assert cron.poll() is None, (tmp_path / "cron.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "cron.log").read_text()
            time.sleep(0.1)
    finally:
        os.killpg(cron.pid, signal.SIGTERM)
        cron.wait(30)
    monkeypatch.setattr(jobs, "_rq_app", app)
    SimpleWorker([queue], connection=redis_connection).work(burst=True)
    db.session.rollback()
    runs = {run.name: run for run in db.session.scalars(select(JobRun))}
    assert set(runs) >= wanted
    assert all(runs[name].outcome in ("ok", "error") and runs[name].runs >= 1 for name in wanted)
    assert runs["alert_notifications"].outcome == "ok"
    assert runs["alert_notifications"].last_success_at is not None
