"""TASKS_RATE_LIMIT (429 with Retry-After) and TASKS_MAX_QUEUE_DEPTH (503), against fakeredis."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from rq import Queue

from taskqueue_site.settings import parse_rate
from tests.test_views import assert_error


def test_over_the_rate_a_client_gets_429_with_retry_after(fake_redis, settings):
    settings.TASKS_RATE_LIMIT = "3/m"
    client = Client()
    answers = [client.post("/tasks", {"type": 1}).status_code for _ in range(3)]
    assert answers == [202, 202, 202]
    response = client.post("/tasks", {"type": 1})
    body = assert_error(response, 429, field=None)
    assert "3/m" in body["message"]
    assert 1 <= int(response["Retry-After"]) <= 60
    assert Queue("default", connection=fake_redis).count == 3


def test_the_rate_is_per_client(fake_redis, settings):
    settings.TASKS_RATE_LIMIT = "1/h"
    assert Client(REMOTE_ADDR="10.0.0.1").post("/tasks", {"type": 1}).status_code == 202
    assert Client(REMOTE_ADDR="10.0.0.1").post("/tasks", {"type": 1}).status_code == 429
    assert Client(REMOTE_ADDR="10.0.0.2").post("/tasks", {"type": 1}).status_code == 202


def test_the_page_form_is_rate_limited_too(fake_redis, settings):
    settings.TASKS_RATE_LIMIT = "1/m"
    client = Client()
    assert client.post("/", {"type": "1"}).status_code == 303
    response = client.post("/", {"type": "1"})
    assert response.status_code == 429
    assert "Too many new tasks" in response.content.decode()


def test_off_means_unlimited(fake_redis, settings):
    settings.TASKS_RATE_LIMIT = "off"
    client = Client()
    assert {client.post("/tasks", {"type": 0}).status_code for _ in range(100)} == {202}


def test_a_full_queue_refuses_new_work_with_503(fake_redis, settings):
    settings.TASKS_MAX_QUEUE_DEPTH = 2
    client = Client()
    assert [client.post("/tasks", {"type": 1}).status_code for _ in range(2)] == [202, 202]
    response = client.post("/tasks", {"type": 1})
    body = assert_error(response, 503, field=None)
    assert "already holds 2 waiting tasks" in body["message"]
    assert response["Retry-After"]
    # Other queues are not full.
    high = client.post("/tasks", {"type": 1, "queue": "high"}, content_type="application/json")
    assert high.status_code == 202


def test_delayed_tasks_count_toward_the_depth(fake_redis, settings):
    """They all land on the queue when they fall due: a pile of them is a full queue in waiting."""
    settings.TASKS_MAX_QUEUE_DEPTH = 2
    client = Client()
    delayed = [client.post("/tasks", {"type": 1, "delay": 3600}).status_code for _ in range(2)]
    assert delayed == [202, 202]
    assert_error(client.post("/tasks", {"type": 1}), 503, field=None)


def test_depth_limit_zero_disables_it(fake_redis, settings):
    settings.TASKS_MAX_QUEUE_DEPTH = 0
    assert {Client().post("/tasks", {"type": 0}).status_code for _ in range(20)} == {202}


@pytest.mark.parametrize(
    ("raw", "parsed"), [("60/m", (60, 60)), ("5/s", (5, 1)), ("1000/h", (1000, 3600)), ("off", None)]
)
def test_rates_parse(raw, parsed):
    assert parse_rate(raw) == parsed


@pytest.mark.parametrize("raw", ["60", "60/d", "-1/m", "x/m", "1.5/m"])
def test_bad_rates_are_refused(raw):
    with pytest.raises(ImproperlyConfigured):
        parse_rate(raw)
