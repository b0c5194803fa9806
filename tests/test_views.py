"""The HTTP contract of POST /tasks, GET /tasks/<id> and the pages, against fakeredis."""

import json
import re
import socket
import threading
import time
import uuid
from datetime import UTC, datetime

import pytest
from django.conf import settings
from django.test import Client
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError as RedisResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue
from rq.job import Job, JobStatus
from rq.results import Result
from rq.serializers import JSONSerializer

from tasks_app import connections, jobs
from tests.support.workers import InProcessJSONWorker


def create(client: Client, **kwargs):
    return client.post("/tasks", **kwargs)


def assert_error(response, status: int, field: str | None = "type") -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["status"] == "error"
    assert isinstance(body["message"], str) and body["message"]
    if field is not None:
        assert isinstance(body["errors"][field], list) and body["errors"][field]
    return body


# --- POST /tasks: the ways the original clients send work ---------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"data": {"type": "1"}}, id="multipart, as curl -F type=1"),
        pytest.param(
            {"data": "type=1", "content_type": "application/x-www-form-urlencoded; charset=UTF-8"},
            id="urlencoded, as jQuery $.ajax",
        ),
        pytest.param({"data": {"type": 1}, "content_type": "application/json"}, id="JSON number"),
        pytest.param({"data": {"type": "1"}, "content_type": "application/json"}, id="JSON numeric string"),
    ],
)
def test_create_answers_202_with_id_and_location(fake_redis, kwargs):
    client = Client(enforce_csrf_checks=True)  # the original clients send no CSRF token
    response = create(client, **kwargs)

    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "success"
    task_id = body["data"]["task_id"]
    assert response["Location"] == f"http://testserver/tasks/{task_id}"

    job = Job.fetch(task_id, connection=fake_redis, serializer=JSONSerializer)
    assert job.func_name == "tasks_app.tasks.sleep_task"
    assert job.args == [1]
    assert job.origin == "default"
    assert Queue("default", connection=fake_redis).job_ids == [task_id]


def test_a_task_id_is_a_fresh_random_uuid4(fake_redis, client):
    """Ids are the only key to a job: none may be guessed from another."""
    ids = [create(client, data={"type": "0"}).json()["data"]["task_id"] for _ in range(2)]
    assert ids[0] != ids[1]
    assert all(uuid.UUID(task_id).version == 4 and str(uuid.UUID(task_id)) == task_id for task_id in ids)


def test_jobs_are_stored_as_json_not_pickle(fake_redis):
    task_id = create(Client(), data={"type": 2}, content_type="application/json").json()["data"]["task_id"]
    stored = fake_redis.hget(f"rq:job:{task_id}", "data")
    payload = JSONSerializer.loads(__import__("zlib").decompress(stored))
    assert payload[0] == "tasks_app.tasks.sleep_task"
    assert payload[2] == [2]


@pytest.mark.parametrize("task_type", [0, 1, 2, 3])
def test_every_task_type_is_accepted(fake_redis, task_type):
    assert create(Client(), data={"type": task_type}).status_code == 202


# --- POST /tasks: bad input ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"data": {}}, id="missing type"),
        pytest.param({"data": {"other": "1"}}, id="other field only"),
        pytest.param({"data": {"type": ""}}, id="empty type"),
        pytest.param({"data": {"type": "one"}}, id="not an integer"),
        pytest.param({"data": {"type": "1.5"}}, id="decimal"),
        pytest.param({"data": {"type": "4"}}, id="above range"),
        pytest.param({"data": {"type": "-1"}}, id="below range"),
        pytest.param({"data": {"type": "9" * 5000}}, id="huge integer in a form"),
        pytest.param({"data": {}, "content_type": "application/json"}, id="JSON without type"),
        pytest.param({"data": {"type": None}, "content_type": "application/json"}, id="JSON null"),
        pytest.param({"data": {"type": True}, "content_type": "application/json"}, id="JSON boolean"),
        pytest.param({"data": {"type": 1.5}, "content_type": "application/json"}, id="JSON float"),
        pytest.param({"data": {"type": [1]}, "content_type": "application/json"}, id="JSON list"),
        pytest.param({"data": {"type": {"n": 1}}, "content_type": "application/json"}, id="JSON object"),
        pytest.param({"data": {"type": 10**30}, "content_type": "application/json"}, id="JSON big integer"),
        pytest.param({"data": '{"type": ' + "9" * 5000 + "}", "content_type": "application/json"}, id="JSON huge"),
        pytest.param({"data": '{"type": 1', "content_type": "application/json"}, id="malformed JSON"),
        pytest.param({"data": "[1, 2]", "content_type": "application/json"}, id="JSON array"),
        pytest.param({"data": '"1"', "content_type": "application/json"}, id="JSON string"),
        pytest.param({"data": "NaN", "content_type": "application/json"}, id="JSON NaN"),
        pytest.param({"data": b'{"type": "\xff\xfe"}', "content_type": "application/json"}, id="not UTF-8"),
        pytest.param({"data": "type=1", "content_type": "text/plain"}, id="wrong content type"),
        pytest.param({"data": "<type>1</type>", "content_type": "application/xml"}, id="XML"),
        pytest.param({"data": {"type": "1" * 20_000}}, id="oversized multipart body"),
        pytest.param(
            {"data": '{"type": 1, "pad": "' + "x" * 20_000 + '"}', "content_type": "application/json"},
            id="oversized JSON body",
        ),
    ],
)
def test_bad_input_answers_400_with_field_errors(fake_redis, kwargs):
    response = create(Client(), **kwargs)
    assert_error(response, 400)
    assert Queue("default", connection=fake_redis).count == 0


def test_out_of_range_error_names_the_limit(fake_redis):
    body = assert_error(create(Client(), data={"type": "7"}), 400)
    assert body["errors"]["type"] == ["Ensure this value is less than or equal to 3."]


def test_wrong_method_answers_json_405(fake_redis):
    response = Client().get("/tasks")
    assert_error(response, 405, field=None)
    assert response["Allow"] == "POST"
    assert Client().delete("/tasks/abc").status_code == 405


# --- GET /tasks/<id> ----------------------------------------------------------------------------


def test_status_of_a_queued_task(fake_redis):
    task_id = create(Client(), data={"type": 1}).json()["data"]["task_id"]
    response = Client().get(f"/tasks/{task_id}")

    assert response.status_code == 200
    assert "no-cache" in response["Cache-Control"]
    data = response.json()["data"]
    assert set(data) == {
        "task_id",
        "task_status",
        "task_result",
        "progress",
        "enqueued_at",
        "started_at",
        "ended_at",
        "error",
        "queue",
        "attempt",
        "max_attempts",
        "scheduled_for",
    }
    assert data["task_id"] == task_id
    assert data["task_status"] == "queued"
    assert data["progress"] == 0
    assert data["task_result"] is None and data["error"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", data["enqueued_at"])
    assert data["started_at"] is None and data["ended_at"] is None
    assert (data["queue"], data["attempt"], data["max_attempts"], data["scheduled_for"]) == ("default", 1, 3, None)


def job_in_state(connection, state: str) -> str:
    """A job of ours (or, for "not ours", a bare RQ one) put in `state` the way RQ would store it."""
    task_id = create(Client(), data={"type": 2}).json()["data"]["task_id"]
    job = Job.fetch(task_id, connection=connection, serializer=JSONSerializer)
    if state == "started":
        job.meta["progress"] = 40
        job.started_at = datetime.now(UTC)
        job.set_status(JobStatus.STARTED, pipeline=None)
        job.save()
    elif state == "retried":  # waiting again after a failed first attempt
        job.retries_left = 1
        job.save()
    elif state == "canceled":
        assert (
            Client()
            .post(f"/tasks/{task_id}/cancel", headers={"X-Cancel-Token": jobs.cancel_token(task_id)})
            .status_code
            == 200
        )
    elif state == "deferred":
        queue = Queue("default", connection=connection, serializer=JSONSerializer)
        return queue.enqueue("tasks_app.tasks.sleep_task", 1, depends_on=job, meta={"progress": 0}).id
    elif state == "whole-second times":  # RQ before 1.x stored no fraction of a second
        connection.hset(job.key, "enqueued_at", "2026-11-28T11:11:42Z")
    elif state == "not ours (no meta)":
        return Queue("default", connection=connection, serializer=JSONSerializer).enqueue("bench.jobs.noop").id
    return task_id


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("queued", {"task_status": "queued", "progress": 0, "attempt": 1, "max_attempts": 3}),
        ("started", {"task_status": "started", "progress": 40, "attempt": 1}),
        ("retried", {"task_status": "queued", "attempt": 2, "max_attempts": 3}),
        ("canceled", {"task_status": "canceled", "started_at": None}),
        ("deferred", {"task_status": "deferred", "progress": 0}),
        ("whole-second times", {"task_status": "queued", "enqueued_at": "2026-11-28T11:11:42Z"}),
        ("not ours (no meta)", {"task_status": "queued", "progress": 0, "attempt": 1, "max_attempts": 1}),
    ],
)
def test_a_waiting_or_running_job_reads_as_rq_stored_it(fake_redis, state, expected):
    task_id = job_in_state(fake_redis, state)
    response = Client().get(f"/tasks/{task_id}")
    assert response.status_code == 200
    data = response.json()["data"]
    assert {key: data[key] for key in expected} == expected


def ended_job(connection, state: str) -> str:
    """A job of ours that ended in `state`: run by RQ's worker, or ended through RQ's own Result API."""
    task_id = create(Client(), data={"type": 0}).json()["data"]["task_id"]
    job = Job.fetch(task_id, connection=connection, serializer=JSONSerializer)
    now = datetime.now(UTC)
    if state == "finished after a failed attempt":
        Result.create_failure(job, ttl=500, exc_string="ValueError: first attempt\n", worker_name="w1")
    if state.startswith("finished") or state == "failed after a success":
        InProcessJSONWorker(["default"], connection=connection).work(burst=True)
        if state == "finished, result expired":
            connection.delete(Result.get_key(task_id))
        if state == "failed after a success":  # run again outside this site, failed with no result of its own
            job.set_status(JobStatus.FAILED, pipeline=None)
        return task_id
    if state == "failed, retries exhausted":
        Result.create_max_retries_exceeded(job, 500, None, "w1", "e1", now, now)
    exc_string = {
        "failed": "Traceback (most recent call last):\n  ...\nValueError: boom\n",
        "timed out": "Traceback (most recent call last):\n  ...\nrq.timeouts.JobTimeoutException: Task exceeded\n",
        "stopped": "rq.exceptions.StopRequested\n",
        "failed without a message": "",
        "failed, retries exhausted": "",
    }[state]
    if exc_string:
        Result.create_failure(job, ttl=500, exc_string=exc_string, worker_name="w1")
    job.started_at = job.ended_at = now
    job.set_status(JobStatus.STOPPED if state == "stopped" else JobStatus.FAILED, pipeline=None)
    job.save()
    return task_id


@pytest.mark.parametrize(
    ("state", "status", "result"),
    [
        ("finished", "finished", True),
        ("finished, result expired", "finished", None),
        ("failed", "failed", None),
        ("timed out", "failed", None),
        ("stopped", "stopped", None),
        ("failed without a message", "failed", None),
        ("finished after a failed attempt", "finished", True),
        ("failed after a success", "failed", None),
        ("failed, retries exhausted", "failed", None),
    ],
)
def test_an_ended_job_reads_as_rq_stored_it(db, fake_redis, state, status, result):
    response = Client().get(f"/tasks/{ended_job(fake_redis, state)}")
    assert response.status_code == 200
    data = response.json()["data"]
    assert (data["task_status"], data["task_result"]) == (status, result)
    assert data["error"] is None if status == "finished" else data["error"]


def test_a_finished_jobs_result_is_its_return_value(db, fake_redis):
    task_id = ended_job(fake_redis, "finished")
    data = Client().get(f"/tasks/{task_id}").json()["data"]
    assert (data["task_status"], data["task_result"], data["progress"], data["error"]) == ("finished", True, 100, None)


@pytest.mark.parametrize(
    ("state", "error"),
    [
        ("failed", "ValueError: boom"),
        (
            "timed out",
            f"Timed out: the task ran longer than its limit of {settings.TASK_POLICIES['sleep']['timeout']} seconds.",
        ),
        ("stopped", "Stopped on request while running."),
        ("failed without a message", "The job failed without an error message."),
    ],
)
def test_an_ended_jobs_error_says_why_in_one_line(db, fake_redis, state, error):
    data = Client().get(f"/tasks/{ended_job(fake_redis, state)}").json()["data"]
    assert (data["task_result"], data["error"]) == (None, error)


@pytest.mark.parametrize(
    "refusal",
    [
        RedisConnectionError("Connection closed by server."),
        RedisTimeoutError("Timeout reading from socket"),
        RedisResponseError("BUSY Redis is busy running a script."),
    ],
    ids=["lost", "hung", "busy"],
)
def test_redis_failing_on_an_ended_jobs_result_answers_503(db, fake_redis, monkeypatch, refusal):
    """The second read of a finished task's poll fails like the first would: a 503, never a 500."""
    task_id = ended_job(fake_redis, "finished")

    def fail(*args, **kwargs):
        raise refusal

    monkeypatch.setattr(Result, "fetch_latest", fail)
    assert_error(Client().get(f"/tasks/{task_id}"), 503, field=None)


def test_something_else_under_an_ended_jobs_results_key_reads_as_no_result(db, fake_redis):
    task_id = ended_job(fake_redis, "finished")
    fake_redis.delete(Result.get_key(task_id))
    fake_redis.set(Result.get_key(task_id), "not a stream")
    data = Client().get(f"/tasks/{task_id}").json()["data"]
    assert (data["task_status"], data["task_result"]) == ("finished", None)


@pytest.mark.parametrize(
    ("field", "value", "answer"),
    [
        pytest.param("meta", '{"progress": 7, "max_attempts": 5}'.encode("utf-16"), 200, id="meta in UTF-16"),
        pytest.param("data", __import__("zlib").compress(b"[1, 2]"), 404, id="payload not a call"),
        pytest.param("data", __import__("zlib").compress(b"null"), 404, id="payload null"),
    ],
)
def test_a_hash_rq_reads_oddly_is_rqs_answer_or_no_task_never_a_500(fake_redis, field, value, answer):
    task_id = job_in_state(fake_redis, "queued")
    fake_redis.hset(f"rq:job:{task_id}", field, value)
    assert Client().get(f"/tasks/{task_id}").status_code == answer


def test_a_json_meta_does_not_make_a_pickled_payload_readable(fake_redis):
    queue = Queue("default", connection=fake_redis)  # pickle payload...
    job = queue.enqueue("tasks_app.tasks.sleep_task", 1)
    fake_redis.hset(job.key, "meta", json.dumps({"progress": 0}))  # ...beside a meta that reads as JSON
    assert_error(Client().get(f"/tasks/{job.id}"), 404, field=None)


@pytest.mark.parametrize(
    "path",
    [
        "/tasks/00000000-0000-4000-8000-000000000000",
        "/tasks/..%2F..%2Fetc%2Fpasswd",
        "/tasks/%2e%2e",
        "/tasks/rq:job:*",
        "/tasks/" + "a" * 65,
        "/tasks/%00",
        "/tasks/%E2%98%83",
    ],
)
def test_unknown_or_malformed_ids_answer_404(fake_redis, path):
    response = Client().get(path)
    assert_error(response, 404, field=None)


def test_a_key_that_is_not_a_jobs_hash_answers_404(fake_redis):
    """Something else under a job's key (a list here) is no job: a 404, not Redis's WRONGTYPE as a 500."""
    fake_redis.rpush("rq:job:00000000-0000-4000-8000-000000000000", "not a job")
    assert_error(Client().get("/tasks/00000000-0000-4000-8000-000000000000"), 404, field=None)


def test_a_pickled_job_is_never_read(fake_redis):
    """A job written to Redis as pickle (by someone else) is refused, not unpickled."""
    queue = Queue("default", connection=fake_redis)  # RQ's default serializer is pickle
    job = queue.enqueue("tasks_app.tasks.sleep_task", 1)
    assert_error(Client().get(f"/tasks/{job.id}"), 404, field=None)


# --- Redis unavailable --------------------------------------------------------------------------


def test_redis_down_answers_503_quickly(down_redis):
    started = time.monotonic()
    create_response = create(Client(), data={"type": 1})
    status_response = Client().get("/tasks/00000000-0000-4000-8000-000000000000")
    elapsed = time.monotonic() - started

    for response in (create_response, status_response):
        body = assert_error(response, 503, field=None)
        assert "unavailable" in body["message"]
        assert response["Retry-After"]
    assert elapsed < 4  # two requests, each well under two seconds


@pytest.fixture
def silent_redis(settings, monkeypatch):
    """A port that accepts connections and never answers, like a hung Redis."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted = []
    stop = threading.Event()

    def accept_forever():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept_forever, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    url = settings.RQ_REDIS_URL.replace(settings.RQ_REDIS_URL.split("/")[2], f"127.0.0.1:{port}")
    settings.RQ_QUEUES = {name: {**config, "URL": url} for name, config in settings.RQ_QUEUES.items()}
    monkeypatch.setattr(connections, "_connections", {})
    monkeypatch.setattr(connections, "_queues", {})
    yield
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    listener.close()


def test_hung_redis_answers_503_within_two_seconds(silent_redis):
    for request in (lambda: create(Client(), data={"type": 1}), lambda: Client().get("/tasks/abc")):
        started = time.monotonic()
        response = request()
        assert time.monotonic() - started < 2
        assert_error(response, 503, field=None)


# --- The page -----------------------------------------------------------------------------------


def test_index_has_a_real_form_with_csrf_and_three_buttons():
    response = Client().get("/")
    html = response.content.decode()
    assert response.status_code == 200
    assert re.search(r'<form method="post" action="/"', html)
    assert 'name="csrfmiddlewaretoken"' in html
    buttons = re.findall(r'<button type="submit" name="type" value="(\d)">(\w+)</button>', html)
    assert buttons == [("1", "Short"), ("2", "Medium"), ("3", "Long")]
    assert 'type="module"' in html and "tasks_app/tasks.js" in html


def test_form_post_without_javascript_redirects_to_the_job_page(fake_redis):
    client = Client(enforce_csrf_checks=True)
    token = client.get("/").cookies["csrftoken"].value
    response = client.post("/", {"type": "2", "csrfmiddlewaretoken": token})

    assert response.status_code == 303
    match = re.fullmatch(r"/jobs/([0-9a-f-]{36})\?token=\S+", response["Location"])  # the proof its Cancel needs
    assert match
    page = client.get(response["Location"])
    html = page.content.decode()
    assert page.status_code == 200
    assert 'id="job-status">queued<' in html
    assert '<meta http-equiv="refresh" content="1">' in html
    assert Job.fetch(match.group(1), connection=fake_redis, serializer=JSONSerializer).args == [2]


def test_form_post_without_csrf_token_is_refused(fake_redis):
    response = Client(enforce_csrf_checks=True).post("/", {"type": "1"})
    assert response.status_code == 403
    assert Queue("default", connection=fake_redis).count == 0


def test_form_post_with_bad_type_shows_a_form_error(fake_redis):
    response = Client().post("/", {"type": "9"})
    assert response.status_code == 400
    assert "Ensure this value is less than or equal to 3." in response.content.decode()


def test_form_post_with_redis_down_shows_the_reason(down_redis):
    response = Client().post("/", {"type": "1"})
    assert response.status_code == 503
    assert "The task queue is unavailable" in response.content.decode()


def test_job_page_for_an_unknown_id_is_404(fake_redis):
    response = Client().get("/jobs/nope")
    assert response.status_code == 404
    assert "No task with this id" in response.content.decode()


def test_job_page_stops_refreshing_once_finished(fake_redis):
    task_id = create(Client(), data={"type": 0}).json()["data"]["task_id"]
    from rq import SimpleWorker

    SimpleWorker(["default"], connection=fake_redis, serializer=JSONSerializer).work(burst=True)
    html = Client().get(f"/jobs/{task_id}").content.decode()
    assert 'id="job-status">finished<' in html
    assert "http-equiv" not in html
    assert re.search(r"<dt>Result</dt><dd>\s*done\s*</dd>", html)  # not the raw JSON "true"
    ended = re.search(r'<dt>Ended</dt><dd><time datetime="([^"]+)">(\d+ \w{3} \d{4}, \d\d:\d\d:\d\d) UTC</time>', html)
    assert ended and ended[1].endswith("Z")  # the ISO value for the browser, a human time without it


def test_json_errors_for_api_paths_when_debug_is_off(settings, fake_redis):
    settings.DEBUG = False
    response = Client().get("/tasks/a/b/c")
    assert_error(response, 404, field=None)
    assert json.loads(response.content)["message"].startswith("Nothing at")
