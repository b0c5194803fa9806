"""What the workers run: progress goes to job.meta, the work lives elsewhere."""

import functools
import time
from collections.abc import Callable

from django.conf import settings
from rq import get_current_job
from rq.job import JobStatus

from tasks_app import callbacks, emails, events, thumbnails
from tasks_app.status import describe

# At least one progress report a second, as the status page promises.
PROGRESS_INTERVAL_SECONDS = 0.5


def reports_start(task: Callable) -> Callable:
    """Report the job's start (history, events) before the task runs: RQ has no start callback."""

    @functools.wraps(task)
    def run(*args, **kwargs):
        if job := get_current_job():  # None when run synchronously, outside a worker
            callbacks.on_started(job)
        return task(*args, **kwargs)

    return run


@reports_start
def sleep_task(task_type: int) -> bool:
    """Sleep task_type x TASK_UNIT_SECONDS, reporting progress (0-100) in job.meta."""
    duration = task_type * settings.TASK_UNIT_SECONDS
    job = get_current_job()
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < duration:
        report_progress(job, int(100 * elapsed / duration))
        time.sleep(min(PROGRESS_INTERVAL_SECONDS, duration - elapsed))
    report_progress(job, 100)
    return True


@reports_start
def make_thumbnails(upload_name: str) -> dict:
    job = get_current_job()
    return thumbnails.make_thumbnails(upload_name, report_progress=lambda percent: report_progress(job, percent))


@reports_start
def send_confirmation_email(address: str) -> dict:
    """Send an address its confirmation link, once per job however often the job is retried."""
    job = get_current_job()
    return emails.send_confirmation(address, job_id=job.id, connection=job.connection)


def report_progress(job, percent: int) -> None:
    """Store progress in the job's meta, where GET /tasks/<id> reads it, and tell the event streams."""
    if job is None:  # run synchronously, outside a worker
        return
    if job.meta.get("progress") == percent:
        return
    job.meta["progress"] = percent
    job.save_meta()
    events.publish(job.connection, describe(job, JobStatus.STARTED).as_dict())
