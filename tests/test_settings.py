"""Settings come from the environment, and unsafe production settings refuse to start."""

import json
import re
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


# --- Redis Sentinel -----------------------------------------------------------------------------


def test_sentinel_settings_replace_the_url_for_every_queue():
    code = (
        "from django.conf import settings as s; import json;"
        "print(json.dumps(s.RQ_QUEUES, default=lambda o: f'{o.__module__}.{o.__qualname__}'))"
    )
    result = manage(
        "shell",
        "-c",
        code,
        REDIS_URL="redis://ignored:6379/0",
        REDIS_SENTINELS="10.0.0.1:26379, sentinel-2.internal:26380,[::1]:26381",
        REDIS_MASTER_NAME="taskqueue",
        REDIS_DB="2",
        REDIS_PASSWORD="redis-secret",
        REDIS_SENTINEL_PASSWORD="sentinel-secret",
    )
    assert result.returncode == 0, result.stderr
    queues = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(queues) == {"high", "default", "low"}
    for config in queues.values():
        assert "URL" not in config
        assert config["SENTINELS"] == [["10.0.0.1", 26379], ["sentinel-2.internal", 26380], ["::1", 26381]]
        assert config["MASTER_NAME"] == "taskqueue"
        assert (config["DB"], config["PASSWORD"]) == (2, "redis-secret")
        assert config["SENTINEL_KWARGS"]["password"] == "sentinel-secret"
        assert config["SOCKET_TIMEOUT"] == 1.0
        assert config["CONNECTION_KWARGS"] == {
            "socket_connect_timeout": 0.5,
            "connection_class": "tasks_app.redis_sentinel.FailoverFollowingConnection",
        }
        assert config["SERIALIZER"] == "rq.serializers.JSONSerializer"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REDIS_SENTINELS": "10.0.0.1:26379"}, "REDIS_SENTINELS and REDIS_MASTER_NAME must be set together"),
        ({"REDIS_MASTER_NAME": "taskqueue"}, "REDIS_SENTINELS and REDIS_MASTER_NAME must be set together"),
        ({"REDIS_SENTINELS": "10.0.0.1", "REDIS_MASTER_NAME": "m"}, "REDIS_SENTINELS must be a list of host:port"),
        ({"REDIS_SENTINELS": "h:99999", "REDIS_MASTER_NAME": "m"}, "REDIS_SENTINELS must be a list of host:port"),
        ({"DJANGO_LOG_FORMAT": "xml"}, "DJANGO_LOG_FORMAT must be json or plain"),
        ({"TASK_ABANDONED_AFTER_SECONDS": "nan"}, "TASK_ABANDONED_AFTER_SECONDS must be a finite number"),
        ({"REDIS_SOCKET_TIMEOUT": "inf"}, "REDIS_SOCKET_TIMEOUT must be a finite number"),
        ({"TASKS_MAX_QUEUE_DEPTH": "0.9"}, "TASKS_MAX_QUEUE_DEPTH must be a whole number"),
    ],
)
def test_half_or_malformed_redis_and_log_settings_refuse_to_start(env, message):
    result = manage("check", **env)
    assert result.returncode != 0
    assert message in result.stderr


# --- Every setting is documented -----------------------------------------------------------------

# environ.get("X"), env_bool("X", ...), os.environ.get("X") in the code; ${X} in compose.yml.
READ_FROM_CODE = re.compile(r"""(?:environ\.get|env_bool|env_float|env_int|env_list)\(\s*["']([A-Z][A-Z0-9_]+)["']""")
READ_BY_COMPOSE = re.compile(r"\$\{([A-Z][A-Z0-9_]+)")
# Read by uvicorn itself (documented flags and variables of the production server).
READ_BY_UVICORN = {"FORWARDED_ALLOW_IPS"}


def settings_the_project_reads() -> set[str]:
    names = set(READ_BY_UVICORN)
    for path in [*PROJECT_ROOT.glob("taskqueue_site/*.py"), *PROJECT_ROOT.glob("tasks_app/**/*.py")]:
        names |= set(READ_FROM_CODE.findall(path.read_text()))
    names |= set(READ_BY_COMPOSE.findall((PROJECT_ROOT / "compose.yml").read_text()))
    return names - {"DJANGO_SETTINGS_MODULE"}


def test_every_setting_is_in_env_example():
    # .env.example is the one list of settings; docs/configuration.md points at it.
    names = settings_the_project_reads()
    assert {"REDIS_URL", "REDIS_SENTINELS", "DJANGO_SECRET_KEY", "WEB_CONCURRENCY", "WORKERS"} <= names
    example = (PROJECT_ROOT / ".env.example").read_text()
    assert sorted(name for name in names if not re.search(rf"^#? ?{name}=", example, re.MULTILINE)) == []
