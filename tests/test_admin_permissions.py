"""Every destructive admin URL, ours and django-rq's, for anonymous, read-only staff and operators.

Against a real redis-server: a refused request must leave every key exactly as it was.
"""

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command
from django.http import HttpResponse
from django.test import Client
from django.urls import reverse
from django_rq.urls import get_admin_urlpatterns
from redis import Redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from tasks_app import history, jobs
from tasks_app.models import JobRecord
from tasks_app.permissions import OPERATORS_GROUP, VIEWERS_GROUP
from tasks_app.signals import send_status_changed
from tasks_app.status import describe
from tests.integration.conftest import real_redis, redis_port  # noqa: F401 - fixtures
from tests.support import jobs as support_jobs
from tests.support.accounts import staff
from tests.support.workers import InProcessJSONWorker

pytestmark = pytest.mark.django_db

DASHBOARD = "/admin/django_rq/dashboard"
HISTORY = "/admin/tasks_app/jobrecord/"
DEFAULT = 0  # django-rq numbers queues by sorted name: default, high, low


@dataclass
class Jobs:
    queued: str
    failed: str
    deferred: str
    started: str  # marked as running by a worker that is not there: a stop request reaches nobody
    scheduled: str  # delayed by five minutes
    connection: Redis


@pytest.fixture
def redis_jobs(real_redis, settings) -> Jobs:  # noqa: F811 - the imported fixture
    """A queued job, a failed one and one deferred behind the queued one, all in `default`."""
    settings.TASK_POLICIES = {"sleep": {"timeout": 60, "max_retries": 0, "retry_intervals": [0]}}
    failed = jobs.enqueue_call(support_jobs.explode, ("boom",), kind="sleep", description="explode")
    InProcessJSONWorker(["default"], connection=real_redis.connection).work(burst=True)
    queued = jobs.enqueue_task(1)
    queue = Queue("default", connection=real_redis.connection, serializer=JSONSerializer)
    deferred = queue.enqueue("tests.support.jobs.touch", "/nonexistent", depends_on=queued).id
    started = Job.fetch(jobs.enqueue_task(1, queue_name="high"), connection=real_redis.connection)
    with real_redis.connection.pipeline() as pipeline:
        started.prepare_for_execution("absent-worker", pipeline)
        pipeline.execute()
    send_status_changed(started, describe(started, "started"))
    scheduled = jobs.enqueue_task(1, delay=300)
    history.record_new_jobs()  # as a worker does within a second
    return Jobs(queued, failed, deferred, started.id, scheduled, real_redis.connection)


@pytest.fixture
def anonymous() -> Client:
    return Client()


def redis_state(connection) -> dict[bytes, bytes]:
    """Every key and its serialized value: equal snapshots mean nothing changed."""
    return {key: connection.dump(key) for key in sorted(connection.keys("*"))}


def without_change(redis_jobs: Jobs, request: Callable[[], HttpResponse]) -> HttpResponse:
    """Make a request and check that it left every key in Redis exactly as it was."""
    before = redis_state(redis_jobs.connection)
    response = request()
    assert redis_state(redis_jobs.connection) == before
    return response


def assert_sent_to_login(response: HttpResponse) -> None:
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/?next=")


def assert_refused(response: HttpResponse, permission: str) -> None:
    assert response.status_code == 403
    assert f"tasks_app.{permission}" in response.content.decode()


def status(connection, job_id: str) -> str | None:
    job = (
        Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
        if connection.exists(f"rq:job:{job_id}")
        else None
    )
    return job.get_status().value if job else None


# (method, path, form data, permission, what an operator's request does to Redis)
DJANGO_RQ_ACTIONS = [
    ("GET", "queues/{q}/{queued}/delete/", {}, "delete_job", None),
    ("POST", "queues/{q}/{queued}/delete/", {}, "delete_job", lambda c, j: status(c, j.queued) is None),
    ("GET", "queues/{q}/{failed}/requeue/", {}, "requeue_job", None),
    ("POST", "queues/{q}/{failed}/requeue/", {}, "requeue_job", lambda c, j: status(c, j.failed) == "queued"),
    ("GET", "queues/{q}/{deferred}/enqueue/", {}, "requeue_job", None),
    ("POST", "queues/{q}/{deferred}/enqueue/", {}, "requeue_job", lambda c, j: status(c, j.deferred) == "queued"),
    ("POST", "queues/{q}/{queued}/stop/", {}, "stop_job", None),
    ("GET", "queues/{q}/empty/", {}, "empty_queue", None),
    ("POST", "queues/{q}/empty/", {}, "empty_queue", lambda c, j: status(c, j.queued) is None),
    ("GET", "queues/{q}/requeue-all/", {}, "requeue_job", None),
    ("POST", "queues/{q}/requeue-all/", {}, "requeue_job", lambda c, j: status(c, j.failed) == "queued"),
    ("GET", "queues/{q}/failed/clear/", {}, "delete_job", None),
    ("POST", "queues/{q}/failed/clear/", {}, "delete_job", lambda c, j: status(c, j.failed) is None),
    ("POST", "queues/confirm-action/{q}/", {"action": "delete", "_selected_action": "{queued}"}, "delete_job", None),
    ("POST", "queues/confirm-action/{q}/", {"action": "requeue", "_selected_action": "{failed}"}, "requeue_job", None),
    ("POST", "queues/confirm-action/{q}/", {"action": "stop", "_selected_action": "{queued}"}, "stop_job", None),
    (
        "POST",
        "queues/actions/{q}/",
        {"action": "delete", "job_ids": "{queued}"},
        "delete_job",
        lambda c, j: status(c, j.queued) is None,
    ),
    (
        "POST",
        "queues/actions/{q}/",
        {"action": "requeue", "job_ids": "{failed}"},
        "requeue_job",
        lambda c, j: status(c, j.failed) == "queued",
    ),
    ("POST", "queues/actions/{q}/", {"action": "stop", "job_ids": "{queued}"}, "stop_job", None),
]


def fill(template: str, redis_jobs: Jobs) -> str:
    return template.format(q=DEFAULT, queued=redis_jobs.queued, failed=redis_jobs.failed, deferred=redis_jobs.deferred)


def send(client: Client, method: str, path: str, data: dict, redis_jobs: Jobs):
    url = f"{DASHBOARD}/{fill(path, redis_jobs)}"
    form = {name: fill(value, redis_jobs) for name, value in data.items()}
    return client.get(url) if method == "GET" else client.post(url, form)


def action_id(case) -> str:
    method, path, data, _, _ = case
    return f"{method} {path.replace('{q}/', '')}{' ' + data['action'] if data else ''}"


@pytest.mark.parametrize("case", DJANGO_RQ_ACTIONS, ids=action_id)
def test_django_rq_actions_send_anonymous_users_to_the_login(case, anonymous, redis_jobs):
    method, path, data, _, _ = case
    assert_sent_to_login(without_change(redis_jobs, lambda: send(anonymous, method, path, data, redis_jobs)))


@pytest.mark.parametrize("case", DJANGO_RQ_ACTIONS, ids=action_id)
def test_django_rq_actions_refuse_read_only_staff(case, viewer, redis_jobs):
    method, path, data, permission, _ = case
    assert_refused(without_change(redis_jobs, lambda: send(viewer, method, path, data, redis_jobs)), permission)


@pytest.mark.parametrize("case", DJANGO_RQ_ACTIONS, ids=action_id)
def test_django_rq_actions_work_for_operators(case, operator, redis_jobs):
    method, path, data, _, effect = case
    response = send(operator, method, path, data, redis_jobs)
    assert response.status_code in {200, 302}, response.content[:500]
    if method == "GET" or "confirm-action" in path:
        assert response.status_code == 200  # the confirmation page
    if effect is not None:
        assert effect(redis_jobs.connection, redis_jobs)


def test_django_rq_changes_reach_the_history(operator, redis_jobs):
    assert JobRecord.objects.get(job_id=redis_jobs.failed).status == "failed"
    operator.post(f"{DASHBOARD}/queues/{DEFAULT}/requeue-all/")
    assert JobRecord.objects.get(job_id=redis_jobs.failed).status == "queued"
    operator.post(f"{DASHBOARD}/queues/{DEFAULT}/empty/")
    assert JobRecord.objects.get(job_id=redis_jobs.queued).status == "deleted"


def test_read_only_staff_can_look_at_django_rq_pages(viewer, redis_jobs):
    for path in ("", f"queues/{DEFAULT}/", f"queues/{DEFAULT}/failed/", f"queues/{DEFAULT}/canceled/", "workers/0/"):
        assert viewer.get(f"{DASHBOARD}/{path}").status_code == 200, path
    assert viewer.get(f"{DASHBOARD}/queues/{DEFAULT}/{redis_jobs.failed}/").status_code == 200


DJANGO_RQ_PAGES = [
    "",
    "queues/{q}/",
    "queues/{q}/failed/",
    "queues/{q}/canceled/",
    "workers/{q}/",
    "queues/{q}/{failed}/",
]


@pytest.mark.parametrize("page", DJANGO_RQ_PAGES)
def test_staff_without_the_dashboard_permission_cannot_read_django_rq_pages(page, redis_jobs):
    """django-rq lets any staff account in; job arguments and tracebacks are for viewers and operators."""
    client = staff("nobody")
    response = client.get(f"{DASHBOARD}/{page.format(q=DEFAULT, failed=redis_jobs.failed)}")
    assert response.status_code == 403
    assert "django_rq.admin" in response.content.decode()


@pytest.mark.parametrize("action", ["delete", "requeue"])
def test_an_action_on_a_job_gone_meanwhile_is_a_message_not_a_500(action, operator, redis_jobs):
    gone = "00000000-0000-4000-8000-000000000000"
    response = operator.post(f"{DASHBOARD}/queues/{DEFAULT}/{gone}/{action}/", follow=True)
    assert response.status_code == 200
    [message] = list(response.context["messages"])
    assert "no longer exists" in str(message)


def test_a_bulk_delete_with_a_job_gone_meanwhile_still_updates_the_history(operator, redis_jobs):
    gone = "00000000-0000-4000-8000-000000000000"
    form = {"action": "delete", "job_ids": [redis_jobs.queued, gone]}
    response = operator.post(f"{DASHBOARD}/queues/actions/{DEFAULT}/", form, follow=True)
    assert response.status_code == 200
    assert JobRecord.objects.get(job_id=redis_jobs.queued).status == "deleted"


def test_django_rq_pages_with_redis_down_say_so(viewer, down_redis):
    response = viewer.get(f"{DASHBOARD}/queues/{DEFAULT}/")
    assert response.status_code == 503
    assert "Redis cannot be reached" in response.content.decode()


# django-rq's pages that only read, as these tests know them: every other page refuses a viewer.
VIEWER_PAGES = {
    "home",
    "jobs",
    "queue_details",
    "finished_jobs",
    "failed_jobs",
    "scheduled_jobs",
    "started_jobs",
    "deferred_jobs",
    "job_detail",
    "result_detail",
    "workers",
    "worker_details",
    "scheduler_jobs",
    "cron_scheduler_detail",
    "cron_job_detail",
}


def test_every_django_rq_page_that_is_not_read_only_refuses_a_viewer(viewer, redis_jobs):
    """Checked on the patterns django-rq registers itself, so a page a new version adds is covered too."""
    values = {
        "queue_index": DEFAULT,
        "job_id": redis_jobs.failed,
        "result_id": "0-0",
        "key": "worker",
        "scheduler_index": 0,
        "connection_index": 0,
        "scheduler_name": "scheduler",
        "cron_job_name": "cron",
    }
    refused = set()
    for pattern in get_admin_urlpatterns(name_prefix="django_rq_"):
        name = pattern.name.removeprefix("django_rq_")
        if name in VIEWER_PAGES:
            continue
        url = reverse(f"admin:{pattern.name}", kwargs={key: values[key] for key in pattern.pattern.converters})
        for method in (viewer.get, viewer.post):
            response = without_change(redis_jobs, lambda method=method, url=url: method(url, {"action": "delete"}))
            assert response.status_code == 403, (method, url)
        refused.add(name)
    assert {"delete_job", "requeue_job", "stop_job", "clear", "requeue_all", "actions"} <= refused


def test_a_django_rq_page_the_table_does_not_know_is_for_operators_only(viewer, operator, redis_jobs, monkeypatch):
    from tasks_app import permissions

    # As if django-rq's queue page were new, and nobody had listed it as read-only yet.
    monkeypatch.setattr(permissions, "READ_ONLY_PAGES", permissions.READ_ONLY_PAGES - {"jobs"})
    assert_refused(without_change(redis_jobs, lambda: viewer.get(f"{DASHBOARD}/queues/{DEFAULT}/")), "requeue_job")
    assert operator.get(f"{DASHBOARD}/queues/{DEFAULT}/").status_code == 200


@pytest.mark.parametrize("page", ["1/change/", "1/history/", "1/delete/"])
def test_the_dashboard_has_no_object_pages_to_fail_on(page, operator):
    """django-rq's Dashboard model has no table: the admin's object pages of it are not found, not a 500."""
    assert operator.get(f"{DASHBOARD}/{page}").status_code == 404


# --- Our own actions on the job history ------------------------------------------------------------

OUR_ACTIONS = [
    ("requeue_jobs", "requeue_job", "failed", "queued"),
    ("cancel_jobs", "cancel_job", "queued", "canceled"),
    ("delete_jobs", "delete_job", "failed", None),
    ("stop_jobs", "stop_job", "started", "started"),
    ("run_now_jobs", "run_job", "scheduled", "queued"),
]


def run_action(client: Client, action: str, job_id: str, follow: bool = False, confirmed: bool = True) -> HttpResponse:
    pk = JobRecord.objects.get(job_id=job_id).pk
    form = {"action": action, "index": 0, "_selected_action": [pk], **({"post": "yes"} if confirmed else {})}
    return client.post(HISTORY, form, follow=follow)


def job_for(redis_jobs: Jobs, state: str) -> str:
    return {
        "failed": redis_jobs.failed,
        "queued": redis_jobs.queued,
        "started": redis_jobs.started,
        "scheduled": redis_jobs.scheduled,
    }[state]


@pytest.mark.parametrize(("action", "permission", "state", "after"), OUR_ACTIONS)
def test_history_actions_send_anonymous_users_to_the_login(action, permission, state, after, anonymous, redis_jobs):
    assert_sent_to_login(without_change(redis_jobs, lambda: run_action(anonymous, action, job_for(redis_jobs, state))))


@pytest.mark.parametrize(("action", "permission", "state", "after"), OUR_ACTIONS)
def test_history_actions_refuse_read_only_staff(action, permission, state, after, viewer, redis_jobs):
    job_id = job_for(redis_jobs, state)
    assert_refused(without_change(redis_jobs, lambda: run_action(viewer, action, job_id)), permission)
    assert JobRecord.objects.get(job_id=job_id).status == state


@pytest.mark.parametrize(("action", "permission", "state", "after"), OUR_ACTIONS)
def test_history_actions_work_for_operators(action, permission, state, after, operator, redis_jobs):
    job_id = job_for(redis_jobs, state)
    response = run_action(operator, action, job_id, follow=True)
    assert response.status_code == 200
    assert status(redis_jobs.connection, job_id) == after
    if after is None:
        assert not JobRecord.objects.filter(job_id=job_id).exists()
    else:
        assert JobRecord.objects.get(job_id=job_id).status == after
    [message] = [str(m) for m in response.context["messages"]]
    assert message.startswith(job_id)
    assert f'class="success">{job_id}: ' in response.content.decode()  # as it is: not capitalised
    [entry] = LogEntry.objects.filter(object_repr=job_id)  # the audit trail: who did what
    assert entry.user.username == "operator"
    assert entry.is_deletion() if after is None else entry.get_change_message().endswith("from the admin.")


@pytest.mark.parametrize(
    ("action", "state", "refusal"),
    [
        ("requeue_jobs", "queued", "only failed, stopped or canceled tasks can be requeued"),
        ("cancel_jobs", "started", "is running; stop it instead of canceling it"),
        ("stop_jobs", "queued", "is queued, not running; there is nothing to stop"),
        ("delete_jobs", "started", "is running; stop it before deleting it"),
        ("run_now_jobs", "queued", "only a scheduled task can be run now"),
    ],
)
def test_history_actions_say_which_rows_they_left_alone_and_why(action, state, refusal, operator, redis_jobs):
    job_id = job_for(redis_jobs, state)
    response = without_change(redis_jobs, lambda: run_action(operator, action, job_id, follow=True))
    [message] = list(response.context["messages"])
    assert message.level_tag == "warning" and refusal in str(message) and str(message).startswith(job_id)
    assert JobRecord.objects.get(job_id=job_id).status == state


@pytest.mark.parametrize(
    ("action", "state", "what", "after"),
    [
        ("cancel_jobs", "queued", "canceled", "canceled"),
        ("stop_jobs", "started", "stopped", "started"),  # its worker is absent: the request reaches nobody
        ("delete_jobs", "failed", "deleted", None),
    ],
)
def test_destructive_history_actions_ask_first_and_do_nothing_until_confirmed(
    action, state, what, after, operator, redis_jobs
):
    job_id = job_for(redis_jobs, state)
    other = redis_jobs.started if state != "started" else redis_jobs.queued  # not in a state the action takes
    pks = list(JobRecord.objects.filter(job_id__in=[job_id, other]).values_list("pk", flat=True))
    form = {"action": action, "index": 0, "_selected_action": pks}
    page = without_change(redis_jobs, lambda: operator.post(HISTORY, form))
    assert page.status_code == 200 and JobRecord.objects.get(job_id=job_id).status == state
    html = page.content.decode()
    assert "1 of the 2 selected jobs will be " + what in html and job_id in html and "left alone" in html
    assert 'name="post" value="yes"' in html and "admin-live.js" not in html  # a question never refreshes
    assert not LogEntry.objects.exists()

    response = operator.post(HISTORY, {**form, "post": "yes"}, follow=True)
    assert response.status_code == 200 and status(redis_jobs.connection, job_id) == after
    assert any(str(message).startswith(f"{job_id}: ") for message in response.context["messages"])


def test_a_requeue_needs_no_confirmation(operator, redis_jobs):
    response = run_action(operator, "requeue_jobs", redis_jobs.failed, confirmed=False)
    assert response.status_code == 302 and status(redis_jobs.connection, redis_jobs.failed) == "queued"


def test_django_rq_buttons_are_hidden_from_whoever_lacks_their_permission(viewer, operator, redis_jobs):
    """admin.css hides django-rq's buttons by these body classes (the browser test checks what shows)."""
    missing = ("may-not-requeue", "may-not-delete", "may-not-stop", "may-not-empty", "may-not-act")
    viewer_page = viewer.get(f"{DASHBOARD}/queues/{DEFAULT}/failed/").content.decode()
    operator_page = operator.get(f"{DASHBOARD}/queues/{DEFAULT}/failed/").content.decode()
    assert all(name in viewer_page for name in missing)
    assert not any(name in operator_page for name in missing)


def test_an_action_on_too_many_rows_does_nothing_and_says_why(operator, redis_jobs, monkeypatch):
    from tasks_app import admin as tasks_admin

    monkeypatch.setattr(tasks_admin, "MAX_ACTION_ROWS", 1)
    pks = list(JobRecord.objects.values_list("pk", flat=True))
    assert len(pks) > 1
    form = {"action": "cancel_jobs", "index": 0, "_selected_action": pks}
    response = without_change(redis_jobs, lambda: operator.post(HISTORY, form, follow=True))
    [message] = list(response.context["messages"])
    assert message.level_tag == "error" and "at most 1 at a time" in str(message)


def test_deleting_from_a_jobs_page_goes_back_to_the_list(operator, redis_jobs):
    record = JobRecord.objects.get(job_id=redis_jobs.failed)
    form = {"action": "delete_jobs", "index": 0, "_selected_action": [record.pk], "post": "yes"}
    response = operator.post(HISTORY, {**form, "next": f"{HISTORY}{record.pk}/change/"})
    assert response.status_code == 302 and response["Location"] == HISTORY
    assert not JobRecord.objects.filter(job_id=redis_jobs.failed).exists()


def test_staff_without_the_view_permission_cannot_see_the_history_or_health(redis_jobs):
    client = staff("nobody")
    assert client.get(HISTORY).status_code == 403
    assert client.get(HISTORY + "health/").status_code == 403
    assert client.get(HISTORY + "health.json").status_code == 403


@pytest.mark.parametrize("path", ["", "health/", "health.json"])
def test_history_pages_send_anonymous_users_to_the_login(anonymous, path):
    response = anonymous.get(HISTORY + path)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_nobody_edits_adds_or_deletes_history_rows_by_hand(operator, redis_jobs):
    record = JobRecord.objects.get(job_id=redis_jobs.failed)
    assert operator.get(HISTORY + "add/").status_code == 403
    assert operator.post(f"{HISTORY}{record.pk}/change/", {"status": "finished"}).status_code == 403
    assert operator.post(f"{HISTORY}{record.pk}/delete/", {"post": "yes"}).status_code == 403
    record.refresh_from_db()
    assert record.status == "failed"


def test_the_groups_exist_after_migrate_with_their_permissions():
    viewers = set(Group.objects.get(name=VIEWERS_GROUP).permissions.values_list("codename", flat=True))
    operators = set(Group.objects.get(name=OPERATORS_GROUP).permissions.values_list("codename", flat=True))
    assert viewers == {"view_jobrecord", "admin"}
    assert operators == viewers | {"requeue_job", "cancel_job", "stop_job", "delete_job", "empty_queue", "run_job"}


def test_queue_account_makes_operators_and_viewers(monkeypatch, capsys):
    monkeypatch.setenv("DJANGO_QUEUE_ACCOUNT_PASSWORD", "a long enough passphrase")
    call_command("queue_account", "olga", "--role", "operator", "--no-input")
    assert "Created olga: staff, in the “Queue operators” group." in capsys.readouterr().out
    olga = User.objects.get(username="olga")
    assert olga.is_staff and olga.check_password("a long enough passphrase")
    assert olga.has_perm("tasks_app.empty_queue") and olga.has_perm("tasks_app.view_jobrecord")

    call_command("queue_account", "olga", "--role", "viewer", "--no-input")  # a role change keeps the password
    olga = User.objects.get(username="olga")
    assert list(olga.groups.values_list("name", flat=True)) == [VIEWERS_GROUP]
    assert olga.has_perm("tasks_app.view_jobrecord") and not olga.has_perm("tasks_app.requeue_job")
    assert olga.check_password("a long enough passphrase")


def test_queue_account_refuses_a_new_account_without_a_good_password(monkeypatch):
    monkeypatch.delenv("DJANGO_QUEUE_ACCOUNT_PASSWORD", raising=False)
    with pytest.raises(CommandError, match="needs a password"):
        call_command("queue_account", "vic", "--role", "viewer", "--no-input")
    monkeypatch.setenv("DJANGO_QUEUE_ACCOUNT_PASSWORD", "123")
    with pytest.raises(CommandError, match="too short"):
        call_command("queue_account", "vic", "--role", "viewer", "--no-input")
    assert not User.objects.filter(username="vic").exists()
