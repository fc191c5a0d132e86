"""Scheduled work: plain functions in a registry, run by `flask worker` (APScheduler) or RQ.

Every job is safe to run on many hosts at once: the work itself sits behind leases and
claims, and `run_job` also skips a job another host started less than an interval ago.
Later issues add theirs with `register_job(name, func, interval_seconds)`.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass

import click
from flask import Flask, current_app
from sqlalchemy import update

from app.extensions import db
from app.models import JobRun
from app.services.access import password_reset
from app.services.authorization import (
    grants,  # noqa: F401  (importing it registers its push handlers)
    reconcile,
    sessions,
)
from app.services.custody import sweep
from app.services.notify import alerts, mail, webhooks
from app.services.platform import credentials, health, intake, status
from app.services.relay import outbox as relay_outbox
from app.services.relay import retention as relay_retention
from app.wechat.errors import ApiError, TransportError

log = logging.getLogger(__name__)
RQ_QUEUE = "grantdesk"


@dataclass(frozen=True)
class Job:
    """A named plain function run every `interval_seconds` inside an app context."""

    name: str
    func: Callable[[], object]
    interval_seconds: int


JOBS: list[Job] = []


def register_job(name: str, func: Callable[[], object], interval_seconds: int) -> Job:
    """Add (or replace) a job in the registry the worker schedules."""
    job = Job(name, func, interval_seconds)
    JOBS[:] = [existing for existing in JOBS if existing.name != name] + [job]
    return job


register_job("component_token_refresh", credentials.refresh_component_token_job, 60)
register_job("ticket_watchdog", credentials.ticket_watchdog, 60)
register_job("inbox_retry", intake.retry_failed_events, 60)
# Grants and tokens (issue #6).
register_job("authorizer_token_sweep", sweep.sweep_job, 60)
register_job("authorizer_reconcile", reconcile.reconcile_job, 3600)
register_job("authorization_session_expiry", sessions.expire_sessions, 300)
register_job("webhook_delivery", webhooks.deliver_due, 30)
register_job("mail_outbox", mail.deliver_due, 15)  # issue #12: outgoing email
register_job("password_reset_requests", password_reset.process_requests, 10)
# Operations (issue #13): alert notifications to WeCom, email and the alert webhook.
register_job("alert_notifications", alerts.notify_job, 15)
# Message relay (issue #15): async deliveries (a stored message also wakes its process's drainer,
# so this run catches retries and leftovers), and payloads past RELAY_RETENTION_HOURS.
register_job("relay_outbox", relay_outbox.deliver_due, 5)
register_job("relay_retention", relay_retention.delete_expired, 600)


def get_job(name: str) -> Job:
    for job in JOBS:
        if job.name == name:
            return job
    raise KeyError(name)


def interval_of(job: Job, config) -> int:
    """The job's interval, unless GRANTDESK_JOB_INTERVALS overrides it."""
    return int((config.get("JOB_INTERVALS") or {}).get(job.name, job.interval_seconds))


def run_job(name: str, *, force: bool = False) -> str | None:
    """Run one job now and record the run; None when another host ran it this interval."""
    job = get_job(name)
    # A little under the interval, so that a slightly early tick is not skipped.
    spacing = 0 if force else max(0, interval_of(job, current_app.config) - 5)
    if not health.claim_slot(name, spacing):
        return None
    _set_host(name)
    try:
        detail = str(job.func() or "ok")
    except Exception as exc:  # recorded for the console; the scheduler keeps going
        db.session.rollback()
        log.warning("job %s failed: %s", name, type(exc).__name__)
        health.finish_slot(name, "error", f"{type(exc).__name__}: {exc}"[:500])
        return "error"
    health.finish_slot(name, "ok", detail[:500])
    return detail


def _set_host(name: str) -> None:
    with health.own_transaction() as session:
        session.execute(update(JobRun).where(JobRun.name == name).values(host=socket.gethostname()))


def run_in_app(app: Flask, name: str) -> str | None:
    """Run a job inside a fresh app context (scheduler threads, RQ)."""
    with app.app_context():
        try:
            return run_job(name)
        finally:
            db.session.remove()


_rq_app: Flask | None = None


def rq_run(name: str) -> str | None:
    """Entry point for RQ: the same job, in an app built once per worker process."""
    global _rq_app
    if _rq_app is None:
        from app import create_app

        _rq_app = create_app()
    return run_in_app(_rq_app, name)


def quiet_secret_loggers() -> None:
    """urllib3 DEBUG logs full URLs, and component URLs carry tokens: never below INFO."""
    for name in ("urllib3", "urllib3.connectionpool", "requests"):
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.INFO:
            logger.setLevel(logging.INFO)


# --- commands -------------------------------------------------------------------------------


@click.command("worker")
@click.option("--rq", "use_rq", is_flag=True, help="Work RQ's queue (REDIS_URL) instead.")
@click.option("--burst", is_flag=True, help="With --rq: stop when the queue is empty.")
def worker(use_rq: bool, burst: bool) -> None:
    """Run the scheduled jobs (APScheduler in this process, or an RQ worker)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    quiet_secret_loggers()
    app = current_app._get_current_object()
    if use_rq:
        _rq_worker(app, burst)
    else:
        _scheduler(app)


def _scheduler(app: Flask) -> None:
    from apscheduler.schedulers.blocking import BlockingScheduler

    scheduler = BlockingScheduler(timezone="UTC")
    for job in JOBS:
        scheduler.add_job(
            run_in_app,
            "interval",
            args=(app, job.name),
            seconds=interval_of(job, app.config),
            id=job.name,
            max_instances=1,
            coalesce=True,
            jitter=min(5, interval_of(job, app.config) // 4),
            next_run_time=_utcnow(),
        )
    click.echo(f"worker: {len(JOBS)} jobs: " + ", ".join(j.name for j in JOBS))
    scheduler.start()


def _utcnow():
    from datetime import UTC, datetime

    return datetime.now(UTC)


def _rq_worker(app: Flask, burst: bool) -> None:
    from redis import Redis
    from rq import Queue, Worker

    url = app.config.get("REDIS_URL")
    if not url:
        raise click.ClickException("--rq needs REDIS_URL")
    connection = Redis.from_url(url)
    Worker([Queue(RQ_QUEUE, connection=connection)], connection=connection).work(burst=burst)


@click.command("run-job")
@click.argument("name")
def run_job_command(name: str) -> None:
    """Run one scheduled job now (whatever its last run)."""
    try:
        click.echo(run_job(name, force=True))
    except KeyError:
        raise click.ClickException(f"no job {name!r}; known: {[j.name for j in JOBS]}") from None


@click.command("health")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def health_command(as_json: bool) -> None:
    """Show platform health; exit 0 healthy, 1 warning, 2 critical (monitoring-plugin style)."""
    report = status.report()
    level, reasons = status.assess(report)
    if as_json:
        click.echo(json.dumps(status.as_json(report), ensure_ascii=False, sort_keys=True))
    else:
        _print_health(report, level, reasons)
    sys.exit(level)


def _print_health(report: status.HealthReport, level: int, reasons: list[str]) -> None:
    ticket, token = report.ticket, report.component_token
    click.echo(
        f"status: {status.LEVEL_NAMES[level].upper()}"
        + (f" - {'; '.join(reasons)}" if reasons else "")
    )
    if ticket["present"]:
        click.echo(
            f"ticket: {'valid' if ticket['valid'] else 'EXPIRED'}"
            f" until {ticket['expires_at']:%F %T}Z,"
            f" last push {ticket['silent_seconds']} s ago, {ticket['pushes']} pushes"
        )
    else:
        click.echo("ticket: none received yet")
    if token["present"]:
        state = "valid" if token["valid"] else "EXPIRED"
        click.echo(f"component token: {state} until {token['expires_at']:%F %T}Z")
    else:
        click.echo("component token: none")
    for alert in report.alerts:
        click.echo(f"ALERT {alert.kind}: since {alert.first_seen:%F %T}Z, x{alert.count}")
    for name, value in sorted(report.rejections_today.items()):
        click.echo(f"rejected today {name.removeprefix('rejected:')}: {value}")
    click.echo(
        "inbox: " + (", ".join(f"{k}={v}" for k, v in sorted(report.inbox.items())) or "empty")
    )
    for run in report.jobs:
        when = f"{run.started_at:%F %T}Z" if run.started_at else "never"
        click.echo(f"job {run.name}: {run.outcome or '-'} at {when} ({run.detail or ''})")


@click.command("clear-quota")
def clear_quota_command() -> None:
    """Reset the platform's daily API quotas now (clear_quota/v2: 10 resets a month)."""
    try:
        credentials.clear_quota()
    except (ApiError, TransportError) as exc:
        raise click.ClickException(f"clear_quota failed: {exc}") from None
    click.echo(
        f"quota cleared; used {credentials.clear_quota_usage()['clear_quota_this_month']} "
        "of 10 resets this month"
    )


COMMANDS = (worker, run_job_command, health_command, clear_quota_command)
