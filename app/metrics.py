"""Prometheus metrics at `GET /metrics`, read with `Authorization: Bearer $GRANTDESK_METRICS_TOKEN`.

Counters and histograms live in the process that observes them; under gunicorn (and for the
worker on the same host) set PROMETHEUS_MULTIPROC_DIR so every process writes its values there
and any one of them answers for all. Gauges that come from the database are computed at scrape
time with cheap queries (cached a few seconds), so every process and host reports the same truth.
"""

from __future__ import annotations

import hmac
import os
import threading
import time
from datetime import datetime
from urllib.parse import urlsplit

from flask import Flask, Response, abort, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

PUSHES = Counter(
    "grantdesk_pushes_total",
    "Authorization-event pushes received from WeChat, by InfoType and outcome.",
    ["info_type", "outcome"],
)
PUSHES_REJECTED = Counter(
    "grantdesk_pushes_rejected_total",
    "Requests to the push URLs refused before storing (bad signature, malformed, ...).",
    ["reason"],
)
WECHAT_API_CALLS = Counter(
    "grantdesk_wechat_api_calls_total",
    "Calls to WeChat APIs by API name and errcode (0 = success; http_<status> for HTTP errors).",
    ["api", "errcode"],
)
WECHAT_API_SECONDS = Histogram(
    "grantdesk_wechat_api_seconds",
    "Time WeChat took to answer, by API name.",
    ["api"],
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
HTTP_REQUEST_SECONDS = Histogram(
    "grantdesk_http_request_seconds",
    "Time to answer HTTP requests, by Flask endpoint, method and status.",
    ["endpoint", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RELAY_MESSAGES = Counter(
    "grantdesk_relay_messages_total",
    "Messages and events on the message URL for relaying, by outcome (stored, duplicate,"
    " no_route, not_active, misaddressed, release_check).",
    ["outcome"],
)
RELAY_DELIVERIES = Counter(
    "grantdesk_relay_deliveries_total",
    "Relay deliveries by mode and status: reply deliveries settle as delivered, late or failed;"
    " async ones count each attempt's outcome (delivered, retry, dead).",
    ["mode", "status"],
)
RELAY_REPLY_SECONDS = Histogram(
    "grantdesk_relay_reply_seconds",
    "Time the reply route's service took to answer a forwarded message.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 4, 5),
)
DB_CACHE_SECONDS = 5.0


def init_app(app: Flask) -> None:
    """Time every request and serve /metrics."""
    app.before_request(_start_timer)
    app.after_request(_observe_request)
    app.add_url_rule("/metrics", "metrics", _metrics_view, methods=["GET"])


def _start_timer() -> None:
    g.metrics_started = time.perf_counter()


def _observe_request(response: Response) -> Response:
    started = g.pop("metrics_started", None)
    if started is not None:
        HTTP_REQUEST_SECONDS.labels(
            endpoint=request.endpoint or "unmatched",
            method=request.method,
            status=str(response.status_code),
        ).observe(time.perf_counter() - started)
    return response


def _metrics_view() -> Response:
    """The metrics in Prometheus text format (404 unless a token is configured)."""
    token = current_app.config.get("GRANTDESK_METRICS_TOKEN")
    if not token:
        abort(404)
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return Response(
            "unauthorized\n", 401, {"WWW-Authenticate": 'Bearer realm="metrics"'}, "text/plain"
        )
    response = Response(render(), mimetype=CONTENT_TYPE_LATEST)
    response.headers["Cache-Control"] = "no-store"
    return response


def render() -> bytes:
    """Every family: this process's (or all processes') counters plus the database gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        live = generate_latest(registry)
        live += _unobserved(live)
    else:
        live = generate_latest(REGISTRY)
    database = CollectorRegistry(auto_describe=False)
    database.register(_DatabaseCollector(current_app._get_current_object()))
    return live + generate_latest(database)


def _unobserved(text: bytes) -> bytes:
    """HELP/TYPE of families no process observed yet, so every family is always listed."""
    missing = b""
    for metric in (
        PUSHES,
        PUSHES_REJECTED,
        WECHAT_API_CALLS,
        WECHAT_API_SECONDS,
        HTTP_REQUEST_SECONDS,
        RELAY_MESSAGES,
        RELAY_DELIVERIES,
        RELAY_REPLY_SECONDS,
    ):
        name, kind = metric._name, metric._type
        if f"# TYPE {name} ".encode() not in text:
            missing += f"# HELP {name} {metric._documentation}\n# TYPE {name} {kind}\n".encode()
    return missing


# --- WeChat API calls (a requests response hook on the client's session) --------------------


def api_name(url: str) -> str:
    """The API's name as WeChat's docs (and the sandbox) say it: the path after /cgi-bin/."""
    path = urlsplit(url).path  # never the query string: it carries tokens
    for prefix in ("/cgi-bin/component/", "/cgi-bin/"):
        if path.startswith(prefix):
            return path[len(prefix) :][:64] or "unknown"
    return path.strip("/")[:64] or "unknown"


def observe_wechat_response(response, *args, **kwargs):
    """requests hook: count the call by errcode and time it."""
    api = api_name(response.url)
    if response.status_code != 200:
        errcode = f"http_{response.status_code}"
    else:
        try:
            data = response.json()
            errcode = str(data.get("errcode", 0) or 0) if isinstance(data, dict) else "0"
        except ValueError:
            errcode = "invalid_json"
    WECHAT_API_CALLS.labels(api=api, errcode=errcode).inc()
    WECHAT_API_SECONDS.labels(api=api).observe(response.elapsed.total_seconds())
    return response


# --- gauges from the database ------------------------------------------------------------------

_cache: dict[int, tuple[float, list]] = {}
_cache_lock = threading.Lock()


class _DatabaseCollector:
    def __init__(self, app: Flask):
        self.app = app

    def collect(self):
        key = id(self.app)
        with _cache_lock:
            cached = _cache.get(key)
            if cached and time.monotonic() - cached[0] < DB_CACHE_SECONDS:
                return list(cached[1])
            families = database_gauges()
            _cache[key] = (time.monotonic(), families)
            return list(families)


def _seconds(value: datetime) -> float:
    return round(value.timestamp(), 3)


def database_gauges() -> list[GaugeMetricFamily]:
    """Ticket age, token TTL, authorizers by status, alerts, job successes, relay outbox size."""
    from sqlalchemy import func, select

    from app.extensions import db
    from app.models import (
        Authorizer,
        ComponentCredential,
        Grant,
        HealthAlert,
        JobRun,
        RelayDelivery,
        VerifyTicket,
    )
    from app.services import clock
    from app.services.notify import catalog
    from app.services.platform import platforms

    now, appids = clock.now(), platforms.active_appids()
    ticket_age = GaugeMetricFamily(
        "grantdesk_ticket_age_seconds",
        "Seconds since the platform's current verify ticket arrived.",
        labels=["component_appid"],
    )
    received = dict(
        db.session.execute(
            select(VerifyTicket.component_appid, VerifyTicket.received_at).where(
                VerifyTicket.component_appid.in_(appids)
            )
        ).all()
    )
    token_ttl = GaugeMetricFamily(
        "grantdesk_component_token_ttl_seconds",
        "Seconds until the platform's component access token expires (negative: expired).",
        labels=["component_appid"],
    )
    expires = dict(
        db.session.execute(
            select(ComponentCredential.component_appid, ComponentCredential.expires_at).where(
                ComponentCredential.component_appid.in_(appids),
                ComponentCredential.expires_at.is_not(None),
            )
        ).all()
    )
    for appid in appids:
        if appid in received:
            ticket_age.add_metric([appid], (now - received[appid]).total_seconds())
        if appid in expires:
            token_ttl.add_metric([appid], (expires[appid] - now).total_seconds())
    authorizers = GaugeMetricFamily(
        "grantdesk_authorizers", "Authorized accounts by grant status.", labels=["status"]
    )
    counts = {"active": 0, "needs_reauthorization": 0, "revoked": 0, "none": 0}
    rows = db.session.execute(
        select(Grant.status, func.count(Authorizer.id))
        .select_from(Authorizer)
        .outerjoin(Grant, Grant.authorizer_id == Authorizer.id)
        .group_by(Grant.status)
    ).all()
    for status, count in rows:
        name = "none" if status is None else getattr(status, "value", str(status))
        counts[name] = counts.get(name, 0) + count
    for name, count in sorted(counts.items()):
        authorizers.add_metric([name], count)
    alerts = GaugeMetricFamily(
        "grantdesk_alerts_active",
        "1 while an alert of this kind is active on the platform, else 0.",
        labels=["kind", "severity", "component_appid"],
    )
    active = set(
        db.session.execute(
            select(HealthAlert.kind, HealthAlert.component_appid).where(
                HealthAlert.resolved_at.is_(None)
            )
        ).all()
    )
    kinds = sorted(set(catalog.KINDS) | {kind for kind, _ in active})
    for appid in sorted(set(appids) | {appid for _, appid in active}):
        for kind in kinds:
            value = 1 if (kind, appid) in active else 0
            alerts.add_metric([kind, catalog.severity(kind), appid], value)
    jobs = GaugeMetricFamily(
        "grantdesk_job_last_success_timestamp_seconds",
        "Unix time of each scheduled job's last successful run.",
        labels=["job"],
    )
    for name, at in db.session.execute(
        select(JobRun.name, JobRun.last_success_at).where(JobRun.last_success_at.is_not(None))
    ):
        jobs.add_metric([name], _seconds(at))
    outbox = GaugeMetricFamily(
        "grantdesk_relay_outbox_pending",
        "Async relay deliveries waiting to be delivered (due, in flight, backing off or held).",
    )
    outbox.add_metric(
        [],
        db.session.scalar(
            select(func.count()).select_from(RelayDelivery).where(RelayDelivery.status == "pending")
        ),
    )
    db.session.rollback()  # a read; end the transaction the scrape opened
    return [ticket_age, token_ttl, authorizers, alerts, jobs, outbox]
