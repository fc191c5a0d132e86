"""gunicorn settings for Grantdesk: `gunicorn -c gunicorn.conf.py wsgi:app`.

Threads suit the portal (it mostly waits on WeChat and the database). Both logs go through
app/logging.py's filter, so request lines (`?auth_code=…`), referrers and error messages never
carry codes, tickets, tokens or keys. Command-line flags override what is set here.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from gunicorn.glogging import Logger  # noqa: E402

from app.logging import install_secret_masking  # noqa: E402

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
worker_class = "gthread"
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-")
errorlog = os.environ.get("GUNICORN_ERROR_LOG", "-")
# Combined log format plus the time taken; the query string and referrer are masked.
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(L)s'


class SecretMaskingLogger(Logger):
    """gunicorn's logger with the secret-masking filter on its error and access logs."""

    def setup(self, cfg):
        super().setup(cfg)
        install_secret_masking(self.error_log, self.access_log)


logger_class = SecretMaskingLogger


def child_exit(server, worker):
    """Drop a dead worker's live-gauge files (its counters stay summed, as they should).

    With PROMETHEUS_MULTIPROC_DIR set (an empty directory, wiped before each start), every worker
    writes its metrics there and `/metrics` on any worker reports the sum.
    """
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
