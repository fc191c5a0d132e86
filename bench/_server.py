"""What the gunicorn benchmarks share: a fresh database, the portal under gunicorn next to a bare
baseline endpoint (same server, same run), and the two load shapes: closed-loop throughput and
open-loop latency at a fixed rate.

A load shape takes `send(session) -> result`: one request on the client's own keep-alive
session; a falsy result counts as an error.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

Send = Callable[[requests.Session], object]


def portal(url: str, **config):
    """The portal app on `url`, configured as every benchmark runs it."""
    from app import create_app

    return create_app(
        {"ENV_NAME": "development", "DEBUG": False, "SQLALCHEMY_DATABASE_URI": url, **config}
    )


def portal_with_bare_success():
    """gunicorn entry (`bench._server:portal_with_bare_success()`): the portal plus a bare
    `POST /bench/bare` answering `success`, the baseline of WeChat's push URLs."""
    from flask import Response

    from app.extensions import csrf

    app = portal(os.environ["BENCH_DATABASE_URL"])

    @app.post("/bench/bare")
    @csrf.exempt
    def bare():
        return Response("success", mimetype="text/plain")

    return app


def prepare_database(url: str) -> None:
    """Drop and recreate every table (use a throwaway database)."""
    from app.extensions import db

    with portal(url).app_context():
        db.drop_all()
        db.create_all()
        db.engine.dispose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(
    entry: str,
    url: str,
    workers: int,
    threads: int,
    *,
    probe: tuple[str, str],
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen, str]:
    """gunicorn serving `entry` on a free port with the deployment's gunicorn.conf.py (gthread,
    secret-masking logs); returns once `probe` (method, path) answers. `env` adds environment
    variables (settings). Stop it with `stop`.

    The access log is formatted and masked as in production but written to /dev/null, so that
    the report is not buried in request lines (GUNICORN_ACCESS_LOG overrides)."""
    port = free_port()
    env = {"GUNICORN_ACCESS_LOG": os.devnull, **os.environ, **(env or {}),
           "BENCH_DATABASE_URL": url, "GRANTDESK_CONFIG": "development"}  # fmt: skip
    command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "-k", "gthread",
               "--workers", str(workers), "--threads", str(threads), "-b", f"127.0.0.1:{port}",
               "--log-level", "warning", entry]  # fmt: skip
    proc = subprocess.Popen(command, cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    method, path = probe
    for _ in range(300):
        try:
            requests.request(method, base + path, timeout=10)
            return proc, base
        except requests.RequestException:  # not listening yet, or a worker still booting
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("gunicorn did not start")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Feeder:
    """Hands out distinct prepared requests to client threads, in order (wraps around)."""

    def __init__(self, items):
        self._items, self._i, self._lock = items, -1, threading.Lock()

    def next(self):
        with self._lock:
            self._i += 1
            return self._items[self._i % len(self._items)]

    @property
    def used(self) -> int:
        return self._i + 1


def throughput(send: Send, concurrency: int, seconds: float) -> tuple[float, int]:
    """Closed loop: `concurrency` clients send back to back for `seconds`; (ok/s, errors)."""
    stop_at = time.perf_counter() + seconds
    counts, errors = [0] * concurrency, [0] * concurrency

    def client(i):
        session = requests.Session()
        while time.perf_counter() < stop_at:
            ok = bool(send(session))
            counts[i] += ok
            errors[i] += not ok

    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - started), sum(errors)


def at_rate(send: Send, rate: float, seconds: float) -> list[tuple[float, object]]:
    """Open loop: one request every 1/rate s whatever the answers' speed, for `seconds`;
    returns (seconds taken, result) per request."""
    sessions = threading.local()
    samples: list[tuple[float, object]] = []

    def one():
        if not hasattr(sessions, "s"):
            sessions.s = requests.Session()
        started = time.perf_counter()
        result = send(sessions.s)
        samples.append((time.perf_counter() - started, result))

    with ThreadPoolExecutor(max_workers=64) as pool:
        start = time.perf_counter()
        for n in range(int(rate * seconds)):
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one)
    return samples


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by process `pid` and its children, e.g. gunicorn's
    arbiter and workers (Linux /proc): a cost per request that other load on the machine
    disturbs far less than a rate does."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(entry) == pid or int(fields[1]) == pid:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def percentile(values, q: float) -> float:
    """The q-quantile (0..1) of `values` by rank; nan when empty."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency_at_rate(send: Send, rate: float, seconds: float) -> tuple[float, float, int]:
    """Open loop at `rate`: (p50 ms, p99 ms, errors)."""
    samples = at_rate(send, rate, seconds)
    times = [elapsed * 1000 for elapsed, _ in samples]
    errors = sum(1 for _, result in samples if not result)
    return percentile(times, 0.50), percentile(times, 0.99), errors
