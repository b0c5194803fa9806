"""The job history row follows each job through real workers: finished, failed, canceled, stopped, killed."""

import os
import re
import signal
import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from rq.serializers import JSONSerializer

from tasks_app import history, jobs, status
from tasks_app.admin import exact_time
from tasks_app.models import JobAttempt, JobRecord
from tests.support import jobs as support_jobs
from tests.support.processes import descendants, kill_tree, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

# The goal. By the settings: a heartbeat just before death, then TASK_ABANDONED_AFTER_SECONDS
# until RQ's started registry lets the job go, then up to two heartbeats until a live worker's
# maintenance (workers.JSONWorkerOptions) fails or retries it.
ABANDONED_DEADLINE_SECONDS = 30


def row(job_id: str) -> JobRecord | None:
    return JobRecord.objects.filter(job_id=job_id).first()


def row_becomes(job_id: str, status: str, timeout: float = 20) -> JobRecord:
    return wait_until(
        lambda: (record := row(job_id)) is not None and record.status == status and record,
        timeout,
        f"the history row of {job_id} to become {status} (it is {getattr(row(job_id), 'status', None)})",
        interval=0.1,
    )


def policy(settings, max_retries: int = 0, intervals: list[int] | None = None) -> None:
    settings.TASK_POLICIES = {
        "sleep": {"timeout": 600, "max_retries": max_retries, "retry_intervals": intervals or [0]}
    }


def test_finished_job_row_has_times_duration_result_worker_and_submitter(real_redis, start_worker):
    submitter = {"user_id": None, "username": "", "ip": "10.1.2.3"}
    job_id = jobs.enqueue_task(1, queue_name="high", submitter=submitter)
    history.record_new_jobs()  # what a worker does before its next job
    queued = row(job_id)
    assert queued.status == "queued" and queued.queue == "high"
    assert (queued.kind, queued.task_type, queued.function) == ("sleep", 1, "tasks_app.tasks.sleep_task")
    assert queued.submitter_ip == "10.1.2.3" and queued.submitter == "anonymous (10.1.2.3)"

    assert start_worker(unit_seconds=0.5).wait(timeout=30) == 0
    done = row_becomes(job_id, "finished")
    assert done.result == "true"
    assert done.enqueued_at <= done.started_at <= done.ended_at
    assert 0.4 < done.duration.total_seconds() < 10
    assert done.duration == done.ended_at - done.started_at
    assert done.worker_name
    assert (done.attempt, done.error, done.traceback) == (1, "", "")


def test_a_job_that_starts_records_the_jobs_enqueued_before_it(real_redis, start_worker):
    delayed = jobs.enqueue_task(1, delay=300)  # waits in the scheduled registry, never runs here
    ran = jobs.enqueue_task(0)
    assert row(delayed) is None and row(ran) is None  # no database write on enqueue
    assert start_worker().wait(timeout=30) == 0
    assert row(delayed).status == "scheduled"
    assert row(ran).status == "finished"


def test_failed_job_row_has_error_and_traceback(real_redis, start_worker, settings):
    policy(settings, max_retries=0)
    job_id = jobs.enqueue_call(support_jobs.explode, ("the disk is full",), kind="sleep", description="explode")
    assert start_worker().wait(timeout=30) == 0
    failed = row_becomes(job_id, "failed")
    assert failed.error == "ValueError: the disk is full"
    assert "Traceback (most recent call last)" in failed.traceback and "ValueError" in failed.traceback
    assert failed.ended_at is not None and failed.duration is not None
    assert (failed.attempt, failed.max_attempts) == (1, 1)


def test_retried_job_row_counts_attempts_and_keeps_the_last_error(real_redis, start_worker, settings):
    policy(settings, max_retries=1, intervals=[0])
    job_id = jobs.enqueue_call(support_jobs.explode, ("flaky disk",), kind="sleep", description="explode twice")
    assert start_worker().wait(timeout=30) == 0
    failed = row_becomes(job_id, "failed")
    assert (failed.attempt, failed.max_attempts) == (2, 2)
    assert failed.error == "ValueError: flaky disk"


def test_canceled_job_row_is_canceled_and_the_job_never_runs(real_redis, start_worker, tmp_path):
    marker = tmp_path / "ran"
    job_id = jobs.enqueue_call(support_jobs.touch, (str(marker),), kind="sleep", description="touch")
    assert jobs.cancel_task(job_id) == "canceled"
    assert row(job_id).status == "canceled"
    assert start_worker().wait(timeout=30) == 0
    assert not marker.exists()
    canceled = row(job_id)
    assert canceled.status == "canceled" and canceled.ended_at is not None and canceled.started_at is None


def test_stopped_job_row_is_stopped(real_redis, start_worker):
    start_worker(burst=False, unit_seconds=20)
    job_id = jobs.enqueue_task(2)
    row_becomes(job_id, "started")
    assert jobs.cancel_task(job_id) == "stopped"
    stopped = row_becomes(job_id, "stopped")
    assert stopped.error == "Stopped on request while running."


def start_long_job_and_kill_its_worker(start_worker) -> tuple[str, str]:
    """Run a long job, SIGKILL its worker and the work horse; return (job id, dead worker's name)."""
    doomed = start_worker(burst=False, unit_seconds=30)
    job_id = jobs.enqueue_task(3)
    started = row_becomes(job_id, "started")
    kill_tree(doomed)
    return job_id, started.worker_name


def test_killed_worker_job_is_failed_within_30_seconds_with_the_reason(real_redis, start_worker, settings):
    policy(settings, max_retries=0)
    job_id, dead_worker = start_long_job_and_kill_its_worker(start_worker)
    killed_at = time.monotonic()
    start_worker(burst=False)

    failed = row_becomes(job_id, "failed", timeout=ABANDONED_DEADLINE_SECONDS)
    took = time.monotonic() - killed_at
    print(f"\nkilled worker's job failed {took:.1f} s after the kill")
    assert took < ABANDONED_DEADLINE_SECONDS
    assert failed.error.startswith(f"Worker died: {dead_worker} ")
    assert failed.ended_at is not None
    job = Job.fetch(job_id, connection=real_redis.connection, serializer=JSONSerializer)
    assert job.get_status() == "failed"
    assert job_id in job.failed_job_registry
    assert "AbandonedJobError" in job.latest_result().exc_string  # failed by RQ's own cleanup
    assert status.get_task_status(job_id).error == failed.error  # the status API says why too


def test_killed_worker_job_is_retried_when_its_policy_allows(real_redis, start_worker, settings):
    policy(settings, max_retries=1, intervals=[0])
    job_id, dead_worker = start_long_job_and_kill_its_worker(start_worker)
    killed_at = time.monotonic()
    start_worker(burst=False, unit_seconds=30)

    # The second worker requeues the job (attempt 2) and, being free, runs it.
    retried = wait_until(
        lambda: (record := row(job_id)) and record.attempt == 2 and record,
        ABANDONED_DEADLINE_SECONDS,
        "the job to be retried",
        interval=0.1,
    )
    print(f"\nkilled worker's job retried {time.monotonic() - killed_at:.1f} s after the kill")
    assert retried.status in {"queued", "started"}
    assert retried.error.startswith(f"Worker died: {dead_worker} ")
    running = row_becomes(job_id, "started")
    assert running.worker_name != dead_worker
    assert status.get_task_status(job_id).attempt == 2
    jobs.cancel_task(job_id)  # stop the long second attempt before its worker is stopped
    row_becomes(job_id, "stopped")
    first, second = JobAttempt.objects.filter(record_id=job_id)  # the timeline: the dead worker's run, then this one
    assert (first.number, first.outcome, first.worker_name) == (1, "failed", dead_worker)
    assert first.error.startswith(f"Worker died: {dead_worker} ") and first.retry_at is not None
    assert (second.number, second.outcome, second.worker_name) == (2, "stopped", running.worker_name)


# --- The timeline and the job's page, with real workers ---------------------------------------------


@pytest.fixture
def admin_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", password="x"))
    return client


def job_page(client: Client, job_id: str) -> str:
    return client.get(f"/admin/tasks_app/jobrecord/{row(job_id).pk}/change/").content.decode()


def test_a_job_that_fails_then_finishes_has_both_attempts(real_redis, start_worker, settings):
    policy(settings, max_retries=1, intervals=[0])
    job_id = jobs.enqueue_call(support_jobs.flaky, ("runs", 1), kind="sleep", description="flaky")
    assert start_worker().wait(timeout=30) == 0
    row_becomes(job_id, "finished")
    first, second = JobAttempt.objects.filter(record_id=job_id)
    assert (first.number, first.outcome, first.error) == (1, "failed", "ConnectionError: transient failure 1 of 1")
    assert (second.number, second.outcome, second.error) == (2, "finished", "")
    assert first.worker_name and first.worker_name == second.worker_name
    assert first.started_at < first.ended_at <= first.retry_at <= second.enqueued_at < second.started_at


def test_the_job_page_shows_the_next_retry(real_redis, start_worker, settings, admin_client):
    policy(settings, max_retries=1, intervals=[600])
    job_id = jobs.enqueue_call(support_jobs.explode, ("flaky",), kind="sleep", description="explode")
    assert start_worker().wait(timeout=30) == 0
    row_becomes(job_id, "scheduled")
    due = ScheduledJobRegistry("default", connection=real_redis.connection).get_scheduled_time(job_id)
    page = job_page(admin_client, job_id)
    assert f"next retry at {exact_time(due)}" in page and "ValueError: flaky" in page


def test_the_job_page_shows_a_running_jobs_progress(real_redis, start_worker, admin_client):
    start_worker(burst=False, unit_seconds=10)
    job_id = jobs.enqueue_task(3)
    row_becomes(job_id, "started")

    def progress_shown() -> int:
        found = re.search(
            r'<progress class="job-progress" max="100" value="(\d+)"></progress> \1% done',
            job_page(admin_client, job_id),
        )
        return int(found[1]) if found else 0

    assert 0 < wait_until(progress_shown, 20, "the job page to show progress") < 100
    jobs.cancel_task(job_id)
    row_becomes(job_id, "stopped")


def test_run_now_runs_a_scheduled_job_at_once(real_redis, start_worker, admin_client):
    job_id = jobs.enqueue_task(0, delay=3600)
    history.record_new_jobs()
    start_worker(burst=False)
    form = {"action": "run_now_jobs", "index": 0, "_selected_action": [row(job_id).pk]}
    assert admin_client.post("/admin/tasks_app/jobrecord/", form).status_code == 302
    done = row_becomes(job_id, "finished")
    [attempt] = JobAttempt.objects.filter(record_id=job_id)
    assert attempt.outcome == "finished" and attempt.worker_name == done.worker_name


def test_a_killed_work_horse_ends_its_attempt_with_the_run_it_had(real_redis, start_worker, settings):
    policy(settings, max_retries=0)
    worker = start_worker(burst=False, unit_seconds=30)
    job_id = jobs.enqueue_task(3)
    started = row_becomes(job_id, "started")
    for pid in descendants(worker.pid):  # the work horse; its worker lives on and reports the death
        os.kill(pid, signal.SIGKILL)
    failed = row_becomes(job_id, "failed")
    assert failed.error == "Worker died: the process running this job was killed."
    [attempt] = JobAttempt.objects.filter(record_id=job_id)
    assert (attempt.outcome, attempt.error) == ("failed", failed.error)
    assert attempt.worker_name == started.worker_name
    # RQ stamps a run's start twice, a few milliseconds apart (as it is prepared, then performed).
    assert abs(attempt.started_at - started.started_at) < timedelta(seconds=1)
