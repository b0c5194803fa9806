"""One signal for every change of a job's status, wherever it happens (web or worker host).

Senders: jobs.py (canceled, requeued) in the web, callbacks.py (started, finished, failed,
stopped, retried) in the worker, history.sync_with_redis for changes made behind their back.
Receivers connect in apps.TasksAppConfig.ready(), so they run in whichever process made the change.
A receiver must never break the job: exceptions are logged, not raised (send_robust).
"""

import logging

from django.dispatch import Signal

logger = logging.getLogger(__name__)

# Arguments: job (rq.job.Job), status (str, RQ's status name), task (status.TaskStatus: the job as
# the API shows it with that status) and traceback (str: the failure's full text, or "").
job_status_changed = Signal()


def send_status_changed(job, task, traceback: str = "") -> None:
    """Tell every receiver that a job now has this status; log receivers that fail."""
    results = job_status_changed.send_robust(
        sender=None, job=job, status=task.task_status, task=task, traceback=traceback
    )
    for receiver, result in results:
        if isinstance(result, Exception):
            logger.error("job_id=%s status receiver %r failed: %r", job.id, receiver, result)
