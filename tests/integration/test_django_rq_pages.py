"""django-rq's pages answer 200, 403 or 404 for every staff account, with a worker busy on a JSON job,
and clean up a dead worker's job from any thread."""

import threading

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django_rq.urls import get_admin_urlpatterns
from rq import Queue
from rq.executions import Execution
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.worker import Worker

from tasks_app import history, jobs
from tasks_app.models import JobRecord
from tasks_app.permissions import OPERATORS_GROUP, VIEWERS_GROUP
from tests.support.processes import wait_until
from tests.test_admin_permissions import staff

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

DASHBOARD = "/admin/django_rq/dashboard"
DEFAULT = 0  # django-rq numbers queues by sorted name: default, high, low


def accounts() -> dict[str, Client]:
    root = Client()
    root.force_login(User.objects.create_superuser("root", password="x"))
    return {
        "staff": staff("nobody"),
        "viewer": staff("viewer", VIEWERS_GROUP),
        "operator": staff("operator", OPERATORS_GROUP),
        "superuser": root,
    }


def dashboard_urls(job_id: str, worker_key: str) -> list[str]:
    """Every page django-rq registers in the admin, and a few it does not (object pages, missing ids)."""
    values = {
        "queue_index": DEFAULT,
        "job_id": job_id,
        "result_id": "0-0",
        "key": worker_key,
        "scheduler_index": 0,
        "connection_index": 0,
        "scheduler_name": "scheduler",
        "cron_job_name": "cron",
    }
    urls = [
        reverse(f"admin:{pattern.name}", kwargs={key: values[key] for key in pattern.pattern.converters})
        for pattern in get_admin_urlpatterns(name_prefix="django_rq_")
    ]
    urls += [f"{DASHBOARD}/{page}" for page in ("1/change/", "1/history/", "1/delete/")]
    return urls + [f"{DASHBOARD}/workers/{DEFAULT}/no-such-worker/", f"{DASHBOARD}/schedulers/9/"]


def test_every_django_rq_page_answers_every_staff_account_while_a_worker_is_busy(real_redis, start_worker):
    job_id = jobs.enqueue_task(3)
    start_worker(burst=False, unit_seconds=5)

    def busy_worker() -> Worker | None:
        workers = Worker.all(connection=real_redis.connection, serializer=JSONSerializer)
        return next((worker for worker in workers if worker.get_current_job_id() == job_id), None)

    worker = wait_until(busy_worker, 20, "the worker never took the job")
    urls = dashboard_urls(job_id, worker.key)
    clients = accounts()
    for name, client in clients.items():
        for url in urls:
            assert client.get(url).status_code in {200, 302, 403, 404, 405}, (name, url)  # 302, 405: POST-only actions
        for url in (f"{DASHBOARD}/stats.json", f"{DASHBOARD}/metrics/"):  # a 401 says how to send a token
            assert client.get(url).status_code in {200, 401}, (name, url)
    page = clients["viewer"].get(f"{DASHBOARD}/workers/{DEFAULT}/{worker.key}/").content.decode()
    assert job_id in page and "sleep_task" in page
    assert busy_worker() is not None, "the pages were checked while the worker was busy"


def test_a_dead_workers_job_is_failed_when_a_page_counts_it_outside_the_main_thread(real_redis, settings):
    """RQ's cleanup runs the job's on_failure callback under SIGALRM, which only the main thread may set."""
    settings.TASK_POLICIES = {"sleep": {"timeout": 60, "max_retries": 0, "retry_intervals": [0]}}
    job = Job.fetch(jobs.enqueue_task(1), connection=real_redis.connection, serializer=JSONSerializer)
    with real_redis.connection.pipeline() as pipeline:
        job.prepare_for_execution("dead-worker", pipeline)
        Execution.create(job, ttl=0, pipeline=pipeline, worker_name="dead-worker")  # its heartbeat is over
        pipeline.execute()
    history.record_new_jobs()
    queue = Queue("default", connection=real_redis.connection, serializer=JSONSerializer)
    wait_until(lambda: queue.started_job_registry.get_expired_job_ids(), 5, "the entry never expired")
    viewer = staff("viewer", VIEWERS_GROUP)
    answers = []
    thread = threading.Thread(target=lambda: answers.append(viewer.get(f"{DASHBOARD}/queues/{DEFAULT}/")))
    thread.start()
    thread.join(30)
    assert answers and answers[0].status_code == 200
    assert job.get_status(refresh=True) == "failed"
    assert JobRecord.objects.get(job_id=job.id).status == "failed"
