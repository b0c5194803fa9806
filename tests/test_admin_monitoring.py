"""What staff see: the history list (filters, search, order), the health page and its JSON, canceled jobs,
the live refresh module, and django-rq's JSON stats and Prometheus metrics behind a header token."""

import html
import json
import re
from datetime import datetime, timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rq import Worker
from rq.job import JobStatus
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from tasks_app import jobs
from tasks_app.connections import get_queue
from tasks_app.models import JobRecord
from tasks_app.permissions import VIEWERS_GROUP
from tests.integration.conftest import real_redis, redis_port  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db

HISTORY = "/admin/tasks_app/jobrecord/"
DASHBOARD = "/admin/django_rq/dashboard"
TOKEN = "s3cret-token-for-tests"


@pytest.fixture
def admin_client_() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", password="x"))
    return client


def add_row(job_id: str, status: str, minutes_ago: float = 1, **fields) -> JobRecord:
    moment = timezone.now() - timedelta(minutes=minutes_ago)
    ended = moment if status in {"finished", "failed", "stopped", "canceled"} else None
    defaults = {
        "queue": "default",
        "function": "tasks_app.tasks.sleep_task",
        "kind": "sleep",
        "task_type": 1,
        "created_at": moment - timedelta(seconds=5),
        "started_at": moment - timedelta(seconds=3) if ended else None,
        "ended_at": ended,
        "duration": timedelta(seconds=3) if ended else None,
    }
    return JobRecord.objects.create(job_id=job_id, status=status, **{**defaults, **fields})


def listed_ids(response) -> list[str]:
    return [record.job_id for record in response.context["cl"].result_list]


# --- The history list -----------------------------------------------------------------------------


def test_history_lists_newest_first_with_readable_durations(admin_client_):
    add_row("older", "finished", minutes_ago=30, duration=timedelta(seconds=184))
    add_row("newer", "failed", minutes_ago=2, error="ValueError: boom")
    response = admin_client_.get(HISTORY)
    assert response.status_code == 200
    assert listed_ids(response) == ["newer", "older"]
    page = response.content.decode()
    assert "3 min 4 s" in page
    assert "ValueError: boom" in page
    assert 'class="job-status job-status-failed"' in page


def test_history_shows_results_as_people_read_them(admin_client_):
    thumbnails = [{"size": size, "url": f"/media/t-{size}.png", "width": size, "height": size} for size in (256, 128)]
    add_row(
        "thumbs",
        "finished",
        function="tasks_app.tasks.make_thumbnails",
        task_type=None,
        result=json.dumps({"original": {"width": 800, "height": 800}, "thumbnails": thumbnails}),
    )
    add_row(
        "mail",
        "finished",
        function="tasks_app.tasks.send_confirmation_email",
        task_type=None,
        result=json.dumps({"email": "olga@example.com", "sent_at": "2026-12-06T04:59:28Z"}),
    )
    add_row("sleep", "finished", result="true")
    add_row("cut", "finished", result='{"a": "' + "x" * 100 + "…")  # shortened when stored: shown as it is
    page = admin_client_.get(HISTORY).content.decode()
    assert '<a href="/media/t-256.png"><img class="job-thumbnail" src="/media/t-128.png"' in page
    assert "sent to olga@example.com" in page and "sent_at" not in page
    assert '<td class="field-outcome">done</td>' in page
    assert "{&quot;a&quot;: &quot;xxx" in page
    assert "short sleep" in page and "make thumbnails" in page  # not "sleep · type 1", not a dotted path
    assert "4 jobs" in page and "job history" not in page.split("<h1>", 1)[1]


def test_history_filters_have_readable_names(admin_client_):
    add_row("a", "finished", task_type=0)
    add_row("b", "failed", function="tests.support.jobs.explode", task_type=None)
    filters = admin_client_.get(HISTORY).content.decode().split('id="changelist-filter"')[1]
    for label in ("instant sleep", "long sleep", "thumbnails or email", ">sleep<", ">confirmation email<"):
        assert label in filters
    assert ">confirmation_email<" not in filters and ">0<" not in filters and ">-<" not in filters


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status__exact=failed", ["b-failed"]),
        ("queue__exact=high", ["c-high"]),
        ("task_type__exact=3", ["c-high"]),
        ("function__exact=tests.support.jobs.explode", ["b-failed"]),
        ("task_type__exact=none", ["b-failed"]),  # "thumbnails or email": the tasks without a type
        ("q=a-fin", ["a-finished"]),  # the start of a job id
        ("q=grace", ["b-failed"]),  # a submitter's user name
        ("q=203.0.113.9", ["c-high"]),  # a submitter's address
    ],
)
def test_history_filters_and_search(admin_client_, query, expected):
    add_row("a-finished", "finished", submitter_username="ada")
    add_row("b-failed", "failed", function="tests.support.jobs.explode", submitter_username="grace", task_type=None)
    add_row("c-high", "queued", queue="high", task_type=3, submitter_ip="203.0.113.9")
    assert sorted(listed_ids(admin_client_.get(f"{HISTORY}?{query}"))) == expected


def test_history_filters_by_date(admin_client_):
    add_row("today", "finished", minutes_ago=1)
    add_row("last-month", "finished", minutes_ago=60 * 24 * 40)
    today = timezone.localdate()
    response = admin_client_.get(f"{HISTORY}?created_at__year={today.year}&created_at__month={today.month}")
    assert "today" in listed_ids(response)
    past_week = re.search(
        r'href="(\?created_at__gte=[^"]+)"[^>]*>Past 7 days', admin_client_.get(HISTORY).content.decode()
    )
    response = admin_client_.get(HISTORY + html.unescape(past_week[1]))
    assert listed_ids(response) == ["today"]


# --- Search: ids, errors, addresses, anonymous -----------------------------------------------------

FIRST_ID = "4fafca6e-3a69-42eb-9d1c-0a1b2c3d4e5f"
SECOND_ID = "0badc0de-0000-4000-8000-4fafca6e0000"  # holds the first one's beginning in its middle


def searched(client: Client, term: str) -> list[str]:
    return sorted(listed_ids(client.get(HISTORY, {"q": term})))


def test_search_finds_a_part_of_an_id_from_its_middle(admin_client_):
    add_row(FIRST_ID, "finished")
    add_row(SECOND_ID, "finished")
    assert searched(admin_client_, "3a69-42eb") == [FIRST_ID]
    assert searched(admin_client_, "c0de-0000") == [SECOND_ID]


def test_an_ids_beginning_finds_the_jobs_whose_id_starts_with_it(admin_client_):
    add_row(FIRST_ID, "finished")
    add_row(SECOND_ID, "finished")
    add_row("4fafca6f-0000-4000-8000-000000000000", "finished")  # sorts right after the beginning
    # An id that starts with it comes first; one that only holds it in its middle is left out.
    assert searched(admin_client_, "4fafca6e") == [FIRST_ID]
    assert searched(admin_client_, "4FAFCA6E-3a69") == [FIRST_ID]


def test_search_finds_a_word_of_an_error_in_any_case(admin_client_):
    add_row("damaged-image", "failed", error="OSError: the image file is damaged (truncated JPEG data)")
    add_row("timed-out", "failed", error="JobTimeoutException: Task exceeded maximum timeout value")
    add_row("retrying", "scheduled", error="OSError: damaged", attempt=2, max_attempts=3)
    assert searched(admin_client_, "damaged") == ["damaged-image", "retrying"]
    assert searched(admin_client_, "Damaged truncated") == ["damaged-image"]


def test_search_finds_the_email_address_a_job_sent_to(admin_client_, fake_redis):
    task_id = jobs.enqueue_confirmation_email("Ada.Lovelace@Example.com")
    jobs.enqueue_confirmation_email("grace@example.com")
    assert JobRecord.objects.count() == 0  # the list records them, as after any enqueue
    assert searched(admin_client_, "ada.lovelace@example.com") == [task_id]
    assert searched(admin_client_, "Ada.Lovelace@Example.com") == [task_id]
    assert JobRecord.objects.get(job_id=task_id).email == "ada.lovelace@example.com"


def test_anonymous_finds_the_jobs_no_account_submitted(admin_client_):
    add_row("by-ada", "finished", submitter_username="ada", submitter_ip="192.0.2.1")
    add_row("by-nobody", "finished", submitter_ip="198.51.100.7")
    assert searched(admin_client_, "anonymous") == ["by-nobody"]
    assert searched(admin_client_, "Anonymous") == ["by-nobody"]


# --- At scale: no query over every row for the filters --------------------------------------------


def test_filters_offer_their_choices_without_reading_the_history(admin_client_):
    add_row("thumb", "finished", queue="low", kind="thumbnail", function="tasks_app.tasks.make_thumbnails")
    add_row("sleep", "finished", queue="high", kind="sleep", task_type=2)
    with CaptureQueriesContext(connection) as queries:
        page = admin_client_.get(HISTORY).content.decode()
    assert not [query["sql"] for query in queries if "DISTINCT" in query["sql"].upper()]
    # Every queue, type and task is offered, rows or not.
    for choice in ("?queue__exact=default", "?task_type__exact=3", "?kind__exact=confirmation_email"):
        assert choice in page
    assert listed_ids(admin_client_.get(HISTORY, {"kind__exact": "thumbnail"})) == ["thumb"]
    assert listed_ids(admin_client_.get(HISTORY, {"queue__exact": "high", "task_type__exact": "2"})) == ["sleep"]


def test_the_scale_bench_fills_a_history_that_search_and_filters_find(admin_client_):
    from bench.fill_history import fill

    fill(3000, days=30, log=lambda line: None)
    rows = JobRecord.objects.all()
    assert rows.count() == 3000
    assert set(rows.values_list("status", flat=True)) == set(JobRecord.Status.values)
    assert set(rows.values_list("queue", flat=True)) == {"high", "default", "low"}
    oldest = rows.order_by("created_at").first().created_at
    assert timedelta(days=29) < timezone.now() - oldest < timedelta(days=30, minutes=1)
    emailed = rows.exclude(email="").order_by("pk")[0]
    assert emailed.job_id in searched(admin_client_, emailed.email)
    assert admin_client_.get(HISTORY, {"q": "damaged"}).context["cl"].result_count > 0
    assert admin_client_.get(HISTORY, {"q": "anonymous"}).context["cl"].result_count > 0


def test_a_jobs_page_shows_its_traceback_and_the_actions_that_apply(admin_client_):
    record = add_row("f1", "failed", error="ValueError: boom", traceback="Traceback (most recent call last):\n  boom")
    page = admin_client_.get(f"{HISTORY}{record.pk}/change/").content.decode()
    assert '<pre class="job-traceback">Traceback (most recent call last):\n  boom</pre>' in page
    assert 'value="requeue_jobs"' in page and 'value="delete_jobs"' in page
    assert 'value="cancel_jobs"' not in page and 'value="stop_jobs"' not in page


def test_a_viewer_is_offered_no_actions(real_redis):  # noqa: F811
    user = User.objects.create_user("viewer", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name=VIEWERS_GROUP))
    client = Client()
    client.force_login(user)
    record = add_row("f1", "failed")
    assert "job-action" not in client.get(f"{HISTORY}{record.pk}/change/").content.decode()
    assert "requeue_jobs" not in client.get(HISTORY).content.decode()


# --- Live refresh ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [HISTORY, HISTORY + "health/", f"{DASHBOARD}/", f"{DASHBOARD}/queues/0/details/", f"{DASHBOARD}/workers/0/"],
)
def test_list_and_dashboard_pages_load_the_live_refresh_module(admin_client_, real_redis, path):  # noqa: F811
    assert "tasks_app/admin-live.js" in admin_client_.get(path).content.decode()


def test_confirmation_pages_do_not_refresh_themselves(admin_client_, real_redis):  # noqa: F811
    assert "admin-live.js" not in admin_client_.get(f"{DASHBOARD}/queues/0/empty/").content.decode()
    assert "admin-live.js" not in admin_client_.get("/admin/password_change/").content.decode()


# --- Queue health ---------------------------------------------------------------------------------


def test_health_page_charts_throughput_queues_and_workers_with_their_numbers(admin_client_, real_redis):  # noqa: F811
    two_minutes_ago = timezone.now() - timedelta(minutes=2)  # one moment, so one minute's bar
    for n in range(3):
        add_row(f"done-{n}", "finished", ended_at=two_minutes_ago)
    add_row("failed-1", "failed", ended_at=two_minutes_ago)
    add_row("too-old", "finished", minutes_ago=90)
    jobs.enqueue_task(1, queue_name="high")
    jobs.enqueue_task(1, queue_name="high")
    response = admin_client_.get(HISTORY + "health/")
    assert response.status_code == 200
    page = response.content.decode()
    assert page.count('<div class="chart ') == 3
    assert page.count('class="bar-finished"') == 1 and page.count('class="bar-failed"') == 1
    assert re.search(r'class="bar-finished" style="height: 75%" title="\d\d:\d\d: 3 finished"', page)
    assert re.search(r'class="bar-failed" style="height: 25%" title="\d\d:\d\d: 1 failed"', page)
    assert re.search(r'class="bar-queued" style="width: 100%" title="high: 2 queued"', page)
    assert 'id="tile-finished">3<' in page and 'id="tile-failed">1<' in page and 'id="tile-waiting">2<' in page
    assert '<tr data-queue="high">' in page
    assert "/admin/django_rq/dashboard/queues/0/canceled/" in page
    assert "No worker is running" in page
    assert "https://" not in page.split('<div id="content"', 1)[1]  # nothing to fetch from elsewhere


def test_health_json_has_the_same_numbers(admin_client_, real_redis):  # noqa: F811
    add_row("done", "finished", minutes_ago=0.5)
    jobs.enqueue_task(1, queue_name="low")
    body = admin_client_.get(HISTORY + "health.json").json()
    assert body["status"] == "success"
    data = body["data"]
    assert len(data["minutes"]) == 60
    assert [minute["finished"] for minute in data["minutes"]].count(1) == 1
    assert data["totals"] == {
        "finished_last_hour": 1,
        "failed_last_hour": 0,
        "jobs_waiting": 1,
        "jobs_running": 0,
        "workers_alive": 0,
        "workers_busy": 0,
    }
    assert {queue["name"]: queue["queued"] for queue in data["queues"]} == {"default": 0, "high": 0, "low": 1}


def test_health_page_still_shows_the_history_when_redis_is_down(admin_client_, down_redis):
    add_row("done", "finished", minutes_ago=1)
    page = admin_client_.get(HISTORY + "health/").content.decode()
    assert "Redis cannot be reached" in page
    assert 'id="tile-finished">1<' in page


def queue_history(client: Client) -> dict[str, dict]:
    data = client.get(HISTORY + "health.json").json()["data"]
    return {queue["name"]: queue for queue in data["queue_history"]}


def test_health_json_has_each_queues_p50_and_p95_wait_and_run_times(admin_client_, real_redis):  # noqa: F811
    started = timezone.now() - timedelta(minutes=10)
    for n in range(1, 21):  # waits and runs of 1 s to 20 s, all in one bucket
        add_row(
            f"high-{n}",
            "finished",
            queue="high",
            enqueued_at=started - timedelta(seconds=n),
            started_at=started,
            ended_at=started + timedelta(seconds=n),
            duration=timedelta(seconds=n),
        )
    add_row(
        "slow",
        "failed",
        queue="default",
        enqueued_at=started - timedelta(seconds=100),
        started_at=started,
        ended_at=started + timedelta(seconds=7),
        duration=timedelta(seconds=7),
    )
    long_ago = timezone.now() - timedelta(hours=2)
    add_row(
        "old",
        "finished",
        queue="high",
        enqueued_at=long_ago,
        started_at=long_ago + timedelta(minutes=5),
        ended_at=long_ago + timedelta(minutes=6),
        duration=timedelta(minutes=1),
    )

    queues = queue_history(admin_client_)

    assert list(queues) == ["default", "high", "low"]
    high = queues["high"]
    assert high["wait"] == {"count": 20, "p50": 10.0, "p95": 19.0}  # nearest rank: the 10th and 19th of 20
    assert high["run"] == {"count": 20, "p50": 10.0, "p95": 19.0}
    assert len(high["buckets"]) == 12
    busy = [bucket for bucket in high["buckets"] if bucket["wait"]["count"]]
    assert [bucket["wait"] for bucket in busy] == [{"count": 20, "p50": 10.0, "p95": 19.0}]
    assert queues["default"]["wait"] == {"count": 1, "p50": 100.0, "p95": 100.0}
    assert queues["default"]["run"] == {"count": 1, "p50": 7.0, "p95": 7.0}
    assert queues["low"]["wait"] == {"count": 0, "p50": None, "p95": None}

    page = admin_client_.get(HISTORY + "health/").content.decode()
    row = page.split('<table id="latency-table"', 1)[1].split('<tr data-queue="high">', 1)[1].split("</tr>", 1)[0]
    assert [html.unescape(cell) for cell in re.findall(r"<td[^>]*>([^<]*)</td>", row)] == [
        "20",
        "10 s",
        "19 s",
        "20",
        "10 s",
        "19 s",
    ]
    for chart in ("jobs waiting", "wait time, p50 and p95", "run time, p50 and p95"):
        assert (
            f'<svg class="column-chart-plot" viewBox="0 0 {10 * len(high["buckets"]) if "time" in chart else 600} 100"'
            in page
        )
        assert f'role="img" aria-label="high: {chart}">' in page
    assert re.search(r'<rect class="bar-p95" [^>]*height="100.0"><title>\d\d:\d\d, 20 jobs: p95 19 s</title>', page)
    assert re.search(r'<rect class="bar-p50" [^>]*height="52.63"><title>\d\d:\d\d, 20 jobs: p50 10 s</title>', page)


def test_health_json_has_each_queues_depth_over_the_last_hour(admin_client_, real_redis):  # noqa: F811
    now = timezone.now()
    ago = lambda minutes: now - timedelta(minutes=minutes, seconds=20)  # noqa: E731 - off the minute marks
    spans = [(ago(30), ago(20)), (ago(25), ago(15)), (ago(5), None)]  # waited: started, canceled, still waiting
    add_row(
        "started",
        "finished",
        queue="low",
        enqueued_at=spans[0][0],
        started_at=spans[0][1],
        ended_at=ago(19),
        duration=timedelta(minutes=1),
    )
    add_row(
        "canceled",
        "canceled",
        queue="low",
        enqueued_at=spans[1][0],
        started_at=None,
        ended_at=spans[1][1],
        duration=None,
    )
    add_row("waiting", "queued", queue="low", enqueued_at=spans[2][0], started_at=None, ended_at=None, duration=None)
    add_row("before", "finished", queue="low", enqueued_at=ago(120), started_at=ago(90), ended_at=ago(89))
    add_row("elsewhere", "queued", queue="high", enqueued_at=ago(3), started_at=None, ended_at=None, duration=None)

    depth = queue_history(admin_client_)["low"]["depth"]

    assert len(depth) == 60
    moments = [datetime.fromisoformat(point["at"].replace("Z", "+00:00")) for point in depth]
    assert moments == sorted(moments) and moments[-1] - moments[0] < timedelta(minutes=60)
    expected = [sum(start <= at and (end is None or at < end) for start, end in spans) for at in moments]
    assert [point["waiting"] for point in depth] == expected
    assert max(expected) == 2 and expected[-1] == 1  # both waited 20 to 25 minutes ago; one waits now
    assert max(point["waiting"] for point in queue_history(admin_client_)["high"]["depth"]) == 1


def test_a_job_enqueued_a_moment_ago_counts_as_waiting_at_once(admin_client_, real_redis):  # noqa: F811
    jobs.enqueue_task(1, queue_name="high")  # its row is written later, by whoever reads new jobs first
    assert queue_history(admin_client_)["high"]["depth"][-1]["waiting"] == 1


def test_worker_ids_link_to_django_rqs_worker_page_for_viewers_too(real_redis):  # noqa: F811
    worker = Worker(["low", "high"], connection=real_redis.connection, serializer=JSONSerializer)
    worker.register_birth()
    user = User.objects.create_user("viewer", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name=VIEWERS_GROUP))
    client = Client()
    client.force_login(user)

    page = client.get(HISTORY + "health/").content.decode()

    link = f"{DASHBOARD}/workers/2/{worker.key}/"  # queues by sorted name: default 0, high 1, low 2
    assert f'<a href="{link}">{worker.name[:17]}…</a>' in page
    worker_page = client.get(link)
    assert worker_page.status_code == 200
    assert worker.name in worker_page.content.decode()


def test_failed_counts_agree_with_django_rq_and_say_they_include_stopped_jobs(admin_client_, real_redis):  # noqa: F811
    queue = get_queue("default")
    registry = FailedJobRegistry(queue=queue)
    for name, status in (("boom", JobStatus.FAILED), ("halted", JobStatus.STOPPED)):
        job = queue.enqueue("tests.support.jobs.touch", "/nonexistent", job_id=name)
        queue.remove(job)
        job.set_status(status)
        registry.add(job, exc_string=name)
        add_row(name, status.value, minutes_ago=3)

    page = admin_client_.get(HISTORY + "health/").content.decode()
    rq_stats = admin_client_.get(f"{DASHBOARD}/stats.json").json()
    rq_failed = {stats["name"]: stats["failed_jobs"] for stats in rq_stats["queues"]}["default"]

    header = page.split('<table id="queue-table"', 1)[1].split("</thead>", 1)[0]
    assert '<th scope="col">failed (incl. stopped)</th>' in header
    row = page.split('<tr data-queue="default">', 1)[1].split("</tr>", 1)[0]
    assert re.search(r'data-label="failed \(incl. stopped\)"><a href="[^"]+/failed/">2</a>', row)
    assert rq_failed == 2
    assert 'id="tile-failed">1<' in page  # the history's own count: failed, not stopped
    assert listed_ids(admin_client_.get(HISTORY, {"status__exact": "failed"})) == ["boom"]
    assert listed_ids(admin_client_.get(HISTORY, {"status__exact": "stopped"})) == ["halted"]
    for path in (f"{DASHBOARD}/", f"{DASHBOARD}/queues/0/details/"):
        page = admin_client_.get(path).content.decode()
        assert "counts stopped jobs too" in page.split('id="failed-includes-stopped"', 1)[1][:200]


# --- Canceled jobs --------------------------------------------------------------------------------


def test_canceled_jobs_have_a_page_linked_from_django_rqs_queue_page(admin_client_, real_redis):  # noqa: F811
    job_id = jobs.enqueue_task(1)
    jobs.cancel_task(job_id)
    queue_page = admin_client_.get(f"{DASHBOARD}/queues/0/details/").content.decode()
    assert f'href="{DASHBOARD}/queues/0/canceled/">1</a>' in queue_page
    canceled_page = admin_client_.get(f"{DASHBOARD}/queues/0/canceled/")
    assert canceled_page.status_code == 200
    assert job_id in canceled_page.content.decode()
    assert "Canceled jobs in default" in canceled_page.content.decode()
    assert admin_client_.get(f"{DASHBOARD}/queues/9/canceled/").status_code == 404


# --- django-rq's JSON stats and Prometheus metrics --------------------------------------------------


@pytest.fixture
def token(settings):
    settings.RQ_API_TOKEN = TOKEN
    return TOKEN


def test_stats_json_accepts_the_token_in_the_authorization_header(real_redis, token):  # noqa: F811
    response = Client().get(f"{DASHBOARD}/stats.json", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200
    assert {queue["name"] for queue in response.json()["queues"]} == {"default", "high", "low"}


def test_metrics_accept_the_token_in_the_authorization_header(real_redis, token):  # noqa: F811
    response = Client().get(f"{DASHBOARD}/metrics/", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200
    assert 'rq_jobs{queue="default",status="queued"}' in response.content.decode()


@pytest.mark.parametrize("path", ["stats.json", "metrics/"])
@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Token {TOKEN}", "Bearer "])
def test_a_missing_or_wrong_token_is_refused(real_redis, token, path, authorization):  # noqa: F811
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    response = Client().get(f"{DASHBOARD}/{path}", **headers)
    assert response.status_code == 401
    assert "queues" not in response.json()


@pytest.mark.parametrize("path", [f"stats.json/{TOKEN}", f"stats.json/{TOKEN}/"])
def test_a_token_in_the_url_is_refused(real_redis, token, path):  # noqa: F811
    response = Client().get(f"{DASHBOARD}/{path}")
    assert response.status_code == 401
    body = response.json()
    assert "queues" not in body and "Authorization" in body["message"]


@pytest.mark.parametrize("path", ["stats.json", "metrics/"])
def test_without_a_configured_token_only_staff_sessions_get_in(real_redis, settings, admin_client_, path):  # noqa: F811
    settings.RQ_API_TOKEN = ""
    assert Client().get(f"{DASHBOARD}/{path}", HTTP_AUTHORIZATION="Bearer ").status_code == 401
    assert Client().get(f"{DASHBOARD}/{path}").status_code == 401
    assert admin_client_.get(f"{DASHBOARD}/{path}").status_code == 200


def test_asking_for_some_metrics_does_not_narrow_later_scrapes(real_redis, token):  # noqa: F811
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    Client().get(f"{DASHBOARD}/metrics/", **auth)
    narrowed = Client().get(f"{DASHBOARD}/metrics/?name[]=rq_workers", **auth).content.decode()
    assert "rq_jobs" not in narrowed
    assert "rq_jobs" in Client().get(f"{DASHBOARD}/metrics/", **auth).content.decode()


@pytest.mark.parametrize("path", ["stats.json", "metrics/"])
def test_staff_without_the_viewer_permission_get_no_stats_or_metrics(real_redis, token, path):  # noqa: F811
    client = Client()
    client.force_login(User.objects.create_user("nobody", password="x", is_staff=True))
    response = client.get(f"{DASHBOARD}/{path}")
    assert response.status_code == 401
    body = response.content.decode()
    assert "queues" not in response.json()
    assert "127.0.0.1" not in body and "port" not in body and "timeout" not in body


def test_a_viewers_session_gets_the_metrics(real_redis):  # noqa: F811
    client = Client()
    user = User.objects.create_user("viewer", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name=VIEWERS_GROUP))
    client.force_login(user)
    assert 'rq_jobs{queue="default",status="queued"}' in client.get(f"{DASHBOARD}/metrics/").content.decode()


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR"])
@pytest.mark.parametrize("path", ["stats.json", "metrics/"])
def test_the_bearer_scheme_is_read_in_any_case(real_redis, token, path, scheme):  # noqa: F811
    response = Client().get(f"{DASHBOARD}/{path}", HTTP_AUTHORIZATION=f"{scheme} {token}")
    assert response.status_code == 200


@pytest.mark.parametrize(
    "query",
    [
        "task_type__exact=abc",
        "task_type__exact=99999999999999999999999",
        "queue__exact=nope",
        "kind__exact=nope",
    ],
)
def test_a_filter_value_it_does_not_offer_is_the_admins_error_page_not_a_500(admin_client_, query):
    add_row("a", "finished")
    response = admin_client_.get(f"{HISTORY}?{query}")
    assert response.status_code == 302 and response["Location"].endswith("?e=1")
