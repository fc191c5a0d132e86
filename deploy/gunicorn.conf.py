"""Gunicorn settings for Grantdesk: `gunicorn -c deploy/gunicorn.conf.py wsgi:app`.

With PROMETHEUS_MULTIPROC_DIR set (an empty directory, wiped before each start), every worker
writes its metrics there and `/metrics` on any worker reports the sum.
"""

import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
worker_class = "gthread"
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
accesslog = None  # the app logs each request itself (GRANTDESK_LOG_FORMAT=json for machines)


def child_exit(server, worker):
    """Drop a dead worker's live-gauge files (its counters stay summed, as they should)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
