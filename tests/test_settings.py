"""Settings come from the environment, and unsafe production settings refuse to start."""

import subprocess
import sys

import pytest

from taskqueue_site.settings import redis_url_with_timeouts
from tests.support.processes import PROJECT_ROOT, child_env


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_ROOT,
        env=child_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_debug_off_without_a_secret_key_refuses_to_start():
    result = manage("check", DJANGO_DEBUG="false", DJANGO_SECRET_KEY="", DJANGO_ALLOWED_HOSTS="example.com")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


def test_debug_off_without_allowed_hosts_refuses_to_start():
    result = manage("check", DJANGO_DEBUG="false", DJANGO_SECRET_KEY="x" * 50, DJANGO_ALLOWED_HOSTS="")
    assert result.returncode != 0
    assert "DJANGO_ALLOWED_HOSTS must be set" in result.stderr


def test_a_bad_boolean_is_reported_by_name():
    result = manage("check", DJANGO_DEBUG="maybe")
    assert result.returncode != 0
    assert "DJANGO_DEBUG must be true or false" in result.stderr


def test_settings_read_the_environment():
    code = (
        "from django.conf import settings as s;"
        "print(s.RQ_QUEUES['default']['URL'], s.TASK_UNIT_SECONDS, s.DATABASES['default']['NAME'], s.DEBUG)"
    )
    result = manage(
        "shell",
        "-c",
        code,
        REDIS_URL="redis://:secret@10.0.0.5:6380/3",
        TASK_UNIT_SECONDS="0.25",
        DATABASE_URL="sqlite:////tmp/other.sqlite3",
        DJANGO_DEBUG="true",
    )
    assert result.returncode == 0, result.stderr
    url, unit, database, debug = result.stdout.strip().splitlines()[-1].split()
    assert url.startswith("redis://:secret@10.0.0.5:6380/3?")
    assert "socket_timeout=" in url and "socket_connect_timeout=" in url
    assert (unit, database, debug) == ("0.25", "/tmp/other.sqlite3", "True")


def test_every_queue_uses_the_json_serializer(settings):
    assert settings.RQ_QUEUES
    for config in settings.RQ_QUEUES.values():
        assert config["SERIALIZER"] == "rq.serializers.JSONSerializer"
    assert settings.RQ["WORKER_CLASS"] == "tasks_app.workers.JSONWorker"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://h:1/0", "redis://h:1/0?socket_connect_timeout=0.5&socket_timeout=1.0"),
        ("rediss://h:1/0?socket_timeout=5", "rediss://h:1/0?socket_timeout=5&socket_connect_timeout=0.5"),
    ],
)
def test_timeouts_are_added_to_the_redis_url_unless_given(url, expected):
    assert redis_url_with_timeouts(url, 0.5, 1.0) == expected


def test_an_unknown_redis_scheme_is_refused():
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured):
        redis_url_with_timeouts("http://h:1/0", 0.5, 1.0)
