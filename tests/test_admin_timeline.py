"""A job's page (its timeline, its schedule, retry time and progress), Run now, Retry all failed, and
one requeue rule on django-rq's buttons too, against a real redis-server and an in-process worker."""

from datetime import datetime

import pytest
from django.test import Client
from rq import Queue
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from rq.serializers import JSONSerializer

from tasks_app import admin as tasks_admin
from tasks_app import history, jobs
from tasks_app.admin import exact_time
from tasks_app.models import JobAttempt, JobRecord
from tests.integration.conftest import real_redis, redis_port  # noqa: F401 - fixtures
from tests.support import jobs as support_jobs
from tests.support.workers import InProcessJSONWorker

pytestmark = pytest.mark.django_db

HISTORY = "/admin/tasks_app/jobrecord/"
DASHBOARD = "/admin/django_rq/dashboard"
HIGH = 1  # django-rq numbers queues by sorted name: default, high, low
IMAGE_GONE = "its image was deleted when it ended failed"


@pytest.fixture
def policies(settings):
    def set_policies(max_retries: int = 0, intervals: tuple[int, ...] = (0,)) -> None:
        policy = {"timeout": 60, "max_retries": max_retries, "retry_intervals": list(intervals)}
        settings.TASK_POLICIES = {"sleep": policy, "thumbnail": policy}

    set_policies()
    return set_policies


def run_worker(connection) -> None:
    InProcessJSONWorker(["high", "default", "low"], connection=connection).work(burst=True)


def job_status(connection, job_id: str) -> str:
    return Job.fetch(job_id, connection=connection, serializer=JSONSerializer).get_status().value


def job_page(client: Client, job_id: str) -> str:
    response = client.get(f"{HISTORY}{JobRecord.objects.get(job_id=job_id).pk}/change/")
    assert response.status_code == 200
    return response.content.decode()


@pytest.fixture
def failed_jobs(real_redis, policies):  # noqa: F811 - the imported fixture
    """Failed jobs: one in `default`, two in `high`, and in `high` a thumbnail job whose image is gone."""
    explode = support_jobs.explode
    ids = {
        "default": jobs.enqueue_call(explode, ("boom",), kind="sleep", description="explode"),
        "high": [jobs.enqueue_call(explode, ("boom",), kind="sleep", description="x", queue_name="high") for _ in "ab"],
        "imageless": jobs.enqueue_call(
            explode,
            ("bad",),
            kind="thumbnail",
            description="thumbs",
            meta={"upload": "uploads/gone.png"},
            queue_name="high",
        ),
    }
    run_worker(real_redis.connection)
    assert set(JobRecord.objects.values_list("status", flat=True)) == {"failed"}
    return ids


# --- The job's page -------------------------------------------------------------------------------


def test_the_job_page_shows_every_attempt_and_when_the_retry_is_due(real_redis, policies, viewer):  # noqa: F811
    policies(max_retries=1, intervals=(300,))
    job_id = jobs.enqueue_call(support_jobs.explode, ("flaky",), kind="sleep", description="explode")
    run_worker(real_redis.connection)
    due = ScheduledJobRegistry("default", connection=real_redis.connection).get_scheduled_time(job_id)
    page = job_page(viewer, job_id)
    assert "Timeline: every attempt" in page
    [attempt] = JobAttempt.objects.filter(record_id=job_id)
    assert attempt.outcome == "failed" and attempt.error == "ValueError: flaky"
    assert "ValueError: flaky" in page and exact_time(attempt.started_at) in page
    assert f"next retry at {exact_time(due)}" in page
    assert "job-action" not in page  # a viewer may not run it now


def test_the_job_page_shows_when_a_delayed_job_is_due(real_redis, viewer):  # noqa: F811
    job_id = jobs.enqueue_task(1, delay=600)
    history.record_new_jobs()
    due = ScheduledJobRegistry("default", connection=real_redis.connection).get_scheduled_time(job_id)
    assert f"scheduled for {exact_time(due)}" in job_page(viewer, job_id)


def test_the_job_page_shows_a_running_jobs_progress(real_redis, viewer):  # noqa: F811
    job = Job.fetch(jobs.enqueue_task(3), connection=real_redis.connection, serializer=JSONSerializer)
    with real_redis.connection.pipeline() as pipeline:
        job.prepare_for_execution("a-worker", pipeline)
        pipeline.execute()
    job.meta["progress"] = 40
    job.save_meta()
    history.record_new_jobs()
    page = job_page(viewer, job.id)
    assert '<progress class="job-progress" max="100" value="40"></progress> 40% done' in page


def test_with_redis_down_the_job_page_shows_the_history_and_says_so(viewer, down_redis):
    record = JobRecord.objects.create(
        job_id="j1", status="failed", queue="default", created_at=datetime.now().astimezone()
    )
    JobAttempt.objects.create(record=record, number=1, enqueued_at=record.created_at, outcome="failed", error="E: lost")
    page = job_page(viewer, "j1")
    assert "Redis is unreachable: showing the history only." in page
    assert "E: lost" in page


# --- Run now --------------------------------------------------------------------------------------


def test_run_now_puts_a_scheduled_job_at_the_front_of_its_queue(real_redis, operator):  # noqa: F811
    waiting = jobs.enqueue_task(0)
    job_id = jobs.enqueue_task(0, delay=3600)
    history.record_new_jobs()
    record = JobRecord.objects.get(job_id=job_id)
    assert 'value="run_now_jobs"' in job_page(operator, job_id)  # the button on its page
    form = {"action": "run_now_jobs", "index": 0, "_selected_action": [record.pk], "next": f"{HISTORY}{record.pk}/"}
    response = operator.post(HISTORY, form)
    assert response.status_code == 302 and response["Location"] == f"{HISTORY}{record.pk}/"
    queue = Queue("default", connection=real_redis.connection, serializer=JSONSerializer)
    assert queue.get_job_ids() == [job_id, waiting]
    assert job_id not in ScheduledJobRegistry("default", connection=real_redis.connection)
    assert JobRecord.objects.get(job_id=job_id).status == "queued"
    run_worker(real_redis.connection)
    assert JobRecord.objects.get(job_id=job_id).status == "finished"


def test_viewers_may_not_run_a_job_now(real_redis, viewer):  # noqa: F811
    job_id = jobs.enqueue_task(0, delay=3600)
    history.record_new_jobs()
    form = {"action": "run_now_jobs", "index": 0, "_selected_action": [JobRecord.objects.get(job_id=job_id).pk]}
    response = viewer.post(HISTORY, form)
    assert response.status_code == 403 and "tasks_app.run_job" in response.content.decode()
    assert job_status(real_redis.connection, job_id) == "scheduled"


# --- Retry all failed -----------------------------------------------------------------------------

RETRY_ALL = {"action": "retry_failed_jobs", "index": 0, "select_across": 1, "_selected_action": "all"}


def test_retry_all_failed_says_what_it_will_do_then_requeues_what_the_filters_match(
    failed_jobs,
    operator,
    real_redis,  # noqa: F811
    monkeypatch,
):
    monkeypatch.setattr(tasks_admin.JobRecordAdmin, "list_per_page", 1)  # more than one page of them
    assert "Retry all failed" in operator.get(HISTORY).content.decode()
    confirmation = operator.post(HISTORY + "?queue__exact=high", RETRY_ALL)
    page = confirmation.content.decode()
    assert "3 failed jobs match the list's filters" in page
    assert "<strong>2 will be requeued</strong>" in page and "1 is refused by the requeue rule" in page
    assert IMAGE_GONE in page and "admin-live.js" not in page  # a confirmation never refreshes itself
    assert {job_status(real_redis.connection, job_id) for job_id in failed_jobs["high"]} == {"failed"}

    done = operator.post(HISTORY + "?queue__exact=high", {**RETRY_ALL, "confirm": "yes"}, follow=True)
    messages = [str(message) for message in done.context["messages"]]
    assert "Requeued 2 failed jobs." in messages and any(IMAGE_GONE in message for message in messages)
    assert [job_status(real_redis.connection, job_id) for job_id in failed_jobs["high"]] == ["queued", "queued"]
    assert job_status(real_redis.connection, failed_jobs["imageless"]) == "failed"
    assert job_status(real_redis.connection, failed_jobs["default"]) == "failed"  # filtered out
    assert JobRecord.objects.filter(status="queued").count() == 2


def test_retry_all_failed_follows_the_search_too(failed_jobs, operator, real_redis):  # noqa: F811
    job_id = failed_jobs["default"]
    operator.post(f"{HISTORY}?q={job_id[:13]}", {**RETRY_ALL, "confirm": "yes"})
    assert job_status(real_redis.connection, job_id) == "queued"
    assert JobRecord.objects.filter(status="queued").count() == 1


def test_retry_all_failed_is_for_those_who_may_requeue(failed_jobs, viewer, real_redis):  # noqa: F811
    assert "Retry all failed" not in viewer.get(HISTORY).content.decode()
    for form in (RETRY_ALL, {**RETRY_ALL, "confirm": "yes"}):
        response = viewer.post(HISTORY, form)
        assert response.status_code == 403 and "tasks_app.requeue_job" in response.content.decode()
    assert set(JobRecord.objects.values_list("status", flat=True)) == {"failed"}
    assert job_status(real_redis.connection, failed_jobs["default"]) == "failed"


def test_retry_all_failed_refuses_more_than_its_limit(failed_jobs, operator, monkeypatch):
    monkeypatch.setattr(tasks_admin, "MAX_RETRY_ALL", 3)
    response = operator.post(HISTORY, RETRY_ALL, follow=True)
    [message] = [str(message) for message in response.context["messages"]]
    assert "4 failed jobs match" in message and "at most 3" in message
    assert set(JobRecord.objects.values_list("status", flat=True)) == {"failed"}


# --- One requeue rule on django-rq's pages ---------------------------------------------------------


def test_django_rq_requeue_refuses_a_job_whose_image_is_gone(failed_jobs, operator, real_redis):  # noqa: F811
    job_id = failed_jobs["imageless"]
    response = operator.post(f"{DASHBOARD}/queues/{HIGH}/{job_id}/requeue/", follow=True)
    [message] = [str(message) for message in response.context["messages"]]
    assert IMAGE_GONE in message
    assert job_status(real_redis.connection, job_id) == "failed"


def test_django_rq_requeue_of_a_job_that_can_run_again(failed_jobs, operator, real_redis):  # noqa: F811
    job_id = failed_jobs["high"][0]
    response = operator.post(f"{DASHBOARD}/queues/{HIGH}/{job_id}/requeue/")
    assert response["Location"] == f"{DASHBOARD}/queues/{HIGH}/{job_id}/"
    assert job_status(real_redis.connection, job_id) == "queued"
    assert JobRecord.objects.get(job_id=job_id).status == "queued"


@pytest.mark.parametrize("page", ["requeue_all", "bulk"])
def test_django_rq_requeue_all_and_bulk_requeue_the_rest(page, failed_jobs, operator, real_redis):  # noqa: F811
    if page == "requeue_all":
        response = operator.post(f"{DASHBOARD}/queues/{HIGH}/requeue-all/", follow=True)
    else:
        form = {"action": "requeue", "job_ids": [*failed_jobs["high"], failed_jobs["imageless"]]}
        response = operator.post(f"{DASHBOARD}/queues/actions/{HIGH}/", form, follow=True)
    messages = [str(message) for message in response.context["messages"]]
    assert "Requeued 2 of 3 jobs." in messages and any(IMAGE_GONE in message for message in messages)
    assert [job_status(real_redis.connection, job_id) for job_id in failed_jobs["high"]] == ["queued", "queued"]
    assert job_status(real_redis.connection, failed_jobs["imageless"]) == "failed"
