"""One signal for every change of a job's status, in whichever process makes it; receivers never break a job."""

import logging

from django.dispatch import Signal

logger = logging.getLogger(__name__)

# Arguments: job (rq.job.Job), status (RQ's name), task (status.TaskStatus), traceback (str or "") and
# retry_at (a datetime when the event is a failed run that RQ is about to retry, else None).
job_status_changed = Signal()


def send_status_changed(job, task, traceback: str = "", retry_at=None) -> None:
    results = job_status_changed.send_robust(
        sender=None, job=job, status=task.task_status, task=task, traceback=traceback, retry_at=retry_at
    )
    for receiver, result in results:
        if isinstance(result, Exception):
            logger.error("job_id=%s status receiver %r failed: %r", job.id, receiver, result)
