"""The job registry, run records, the worker's schedule, RQ and `flask health`."""

import os

import pytest
from sqlalchemy import select

from app import jobs
from app.extensions import db
from app.models import JobRun
from app.services import clock


def _run(name):
    db.session.rollback()
    return db.session.scalar(select(JobRun).where(JobRun.name == name))


def test_the_registry_holds_the_credential_jobs():
    names = {job.name for job in jobs.JOBS}
    assert {"component_token_refresh", "ticket_watchdog", "inbox_retry"} <= names


def test_register_job_adds_or_replaces(app, monkeypatch):
    monkeypatch.setattr(jobs, "JOBS", list(jobs.JOBS))
    jobs.register_job("demo", lambda: "one", 30)
    jobs.register_job("demo", lambda: "two", 30)
    assert [job.name for job in jobs.JOBS].count("demo") == 1
    assert jobs.run_job("demo") == "two"


def test_runs_are_recorded_and_spaced_across_hosts(app, monkeypatch):
    monkeypatch.setattr(jobs, "JOBS", list(jobs.JOBS))
    jobs.register_job("demo", lambda: "did it", 60)
    assert jobs.run_job("demo") == "did it"
    assert jobs.run_job("demo") is None  # another host (or tick) ran it this interval
    run = _run("demo")
    assert (run.outcome, run.detail, run.runs) == ("ok", "did it", 1)
    assert run.started_at <= run.finished_at
    clock.advance(60)
    try:
        assert jobs.run_job("demo") == "did it"
    finally:
        clock.reset()
    assert _run("demo").runs == 2


def test_a_failing_job_is_recorded_and_does_not_raise(app, monkeypatch):
    monkeypatch.setattr(jobs, "JOBS", list(jobs.JOBS))

    def boom():
        raise RuntimeError("nope")

    jobs.register_job("boom", boom, 60)
    assert jobs.run_job("boom") == "error"
    run = _run("boom")
    assert (run.outcome, run.failures) == ("error", 1) and "nope" in run.detail


def test_the_worker_schedules_every_job(app, runner, monkeypatch):
    from apscheduler.schedulers.blocking import BlockingScheduler

    scheduled = {}
    monkeypatch.setattr(
        BlockingScheduler,
        "start",
        lambda self: scheduled.update({j.id: j for j in self.get_jobs()}),
    )
    result = runner.invoke(args=["worker"])
    assert result.exit_code == 0, result.output
    assert set(scheduled) == {job.name for job in jobs.JOBS}


def test_flask_health_and_run_job(app, runner):
    app.config["WECHAT_API_BASE"] = "http://127.0.0.1:9"  # nobody there: start-push fails fast
    result = runner.invoke(args=["run-job", "ticket_watchdog"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(args=["health"])
    assert result.exit_code == 2, result.exception  # critical: no ticket yet
    output = result.output
    assert "ticket: none received yet" in output
    assert "ALERT ticket_push_silent" in output
    assert "job ticket_watchdog" in output


def test_a_job_runs_through_rq(app, monkeypatch):
    redis = pytest.importorskip("redis")
    from rq import Queue, SimpleWorker

    connection = redis.Redis.from_url(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/15")
    try:
        connection.ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    monkeypatch.setattr(jobs, "_rq_app", app)
    queue = Queue(f"grantdesk-test-{id(app)}", connection=connection)
    job = queue.enqueue(jobs.rq_run, "inbox_retry")
    SimpleWorker([queue], connection=connection).work(burst=True)
    assert job.get_status() == "finished", job.exc_info
    assert _run("inbox_retry").outcome == "ok"
    queue.delete(delete_jobs=True)


def test_a_purged_or_broken_event_does_not_hold_up_the_retry_batch(app):
    """A row whose payload a purge scrubbed, or that no longer parses, is settled on its own;
    the events after it in the batch still run (found by the convergence test)."""
    from datetime import timedelta

    from app.models import InboxEvent
    from app.services.platform import intake
    from tests.intake.conftest import ticket_xml

    now = clock.now()

    def row(n, raw_xml, outcome, **extra):
        return InboxEvent(
            info_type="component_verify_ticket", create_time=1700000000 + n,
            dedupe_key=f"batch:{n}", fields={}, raw_xml=raw_xml, outcome=outcome,
            received_at=now - timedelta(hours=1), attempts=1, **extra,
        )  # fmt: skip

    scrubbed = row(1, "", "processing", claimed_until=now - timedelta(minutes=1))
    broken = row(2, "<xml><oops", "failed", next_attempt_at=now - timedelta(seconds=1))
    good = row(3, ticket_xml("t-after-the-broken-ones"), "failed", next_attempt_at=now)
    db.session.add_all([scrubbed, broken, good])
    db.session.commit()
    ids = scrubbed.id, broken.id, good.id
    assert intake.retry_failed_events() == "3 due: failed=1, ignored=1, processed=1"
    db.session.expire_all()
    outcomes = [db.session.get(InboxEvent, i).outcome for i in ids]
    assert outcomes == ["ignored", "failed", "processed"]
