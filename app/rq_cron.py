"""RQ cron configuration: `rq cron app/rq_cron.py` enqueues the same jobs the worker runs.

Run `flask --app wsgi worker --rq` (any number, on any host) to execute them.
"""

from rq import cron

from app import create_app
from app.jobs import JOBS, RQ_QUEUE, interval_of, rq_run

_app = create_app()  # imports every module, so later issues' jobs are registered too

for _job in JOBS:
    cron.register(
        rq_run,
        queue_name=RQ_QUEUE,
        args=(_job.name,),
        interval=interval_of(_job, _app.config),
        name=_job.name,
    )
