"""One signal for every change of a job's status, wherever it happens (web or worker host).

Senders: services.py (queued, scheduled, canceled) in the web process, workers.JSONWorker
(started, finished, failed, stopped, and requeued for a retry) in the worker. Receivers connect
in apps.TasksAppConfig.ready(), so they run in whichever process made the change.
A receiver must never break the job: exceptions are logged, not raised (send_robust).
"""

import logging

from django.dispatch import Signal

logger = logging.getLogger(__name__)

# Arguments: job (rq.job.Job), status (str, RQ's status name), connection (redis.Redis), and
# created (bool): True when the job was just enqueued, so nobody can be watching it yet.
job_status_changed = Signal()


def send_status_changed(job, status: str, connection, created: bool = False) -> None:
    """Tell every receiver that a job now has this status; log receivers that fail."""
    results = job_status_changed.send_robust(
        sender=None, job=job, status=status, connection=connection, created=created
    )
    for receiver, result in results:
        if isinstance(result, Exception):
            logger.error("job_id=%s status receiver %r failed: %r", job.id, receiver, result)
