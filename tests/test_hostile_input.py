"""Requests shaped to break the API: deep JSON, wrong methods, too many fields, secrets on debug pages."""

from unittest import mock

import pytest
from django.test import Client

from tasks_app import status

REDIS_PASSWORD = "s3cret-redis-pw"


def test_deeply_nested_json_is_a_400_not_a_500(fake_redis, client):
    body = "[" * 5000 + "]" * 5000  # 10 KB, under the size limit
    response = client.post("/tasks", body, content_type="application/json")

    assert response.status_code == 400, response.content
    assert response.json()["message"] == "The JSON body is nested too deeply."


def test_the_debug_page_shows_no_redis_password(fake_redis, settings, monkeypatch):
    settings.DEBUG = True
    url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:6379/0"
    settings.REDIS_URL = settings.RQ_REDIS_URL = url
    settings.RQ_QUEUES = {name: {**config, "URL": url} for name, config in settings.RQ_QUEUES.items()}
    settings.RQ_CONNECTION = {"URL": url}
    settings.REDIS_SENTINEL_PASSWORD = REDIS_PASSWORD
    monkeypatch.setenv("REDIS_URL", url)

    def fail(task_id, where=url):  # secrets in a frame's variables too
        redis_config = {"URL": where}
        raise RuntimeError(f"boom {len(redis_config)}")

    with mock.patch.object(status, "get_task_status", fail):
        response = Client(raise_request_exception=False, REDIS_URL=url).get("/tasks/abc")

    assert response.status_code == 500
    page = response.content.decode()
    assert "RuntimeError" in page and "boom" in page  # Django's debug page, with its settings
    assert "RQ_QUEUES" in page and "REDIS_URL" in page
    assert REDIS_PASSWORD not in page


@pytest.mark.parametrize("path", ["/tasks/abc", "/tasks/abc/", "/tasks/abc/events", "/tasks/events?id=abc"])
@pytest.mark.parametrize("method", ["put", "patch", "delete", "post"])
def test_wrong_methods_get_the_json_405_not_the_csrf_403(fake_redis, client, path, method):
    response = getattr(client, method)(path, "{}", content_type="application/json")

    assert response.status_code == 405, response.content
    assert response["Content-Type"] == "application/json"
    assert response["Allow"] == "GET, HEAD"
    assert response.json()["status"] == "error"


def test_too_many_form_fields_are_named_as_such(fake_redis, client):
    fields = "&".join(f"f{number}=x" for number in range(1200))  # about 9 KB: under the size limit
    response = client.post("/tasks", fields, content_type="application/x-www-form-urlencoded")

    assert response.status_code == 400, response.content
    message = response.json()["message"]
    assert message == "The form has too many fields: at most 1000 are read."
    assert "larger than" not in message
