"""compose.yml, checked against the Compose Specification's JSON schema (no Docker engine here)."""

import json
from importlib import resources

import jsonschema
import pytest
import yaml

from tests.support.processes import PROJECT_ROOT
from tests.support.webserver import PRODUCTION_ENV, PRODUCTION_FLAGS


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((PROJECT_ROOT / "compose.yml").read_text())


def test_compose_file_matches_the_compose_specification(compose):
    schema_file = resources.files("check_jsonschema") / "builtin_schemas" / "vendor" / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    jsonschema.validate(compose, schema, cls=jsonschema.Draft7Validator)


def test_compose_has_redis_migrate_web_a_scalable_worker_and_a_scheduler(compose):
    services = compose["services"]
    assert set(services) == {"redis", "migrate", "web", "worker", "scheduler"}
    for name in services:
        # A fixed container name would make `--scale worker=3` fail.
        assert "container_name" not in services[name]
    assert "ports" not in services["worker"]  # N workers cannot all bind one host port
    assert services["worker"]["command"][:3] == ["python", "manage.py", "rqworker"]
    # RQ's scheduler runs as a service of its own, so a dying worker cannot hold its locks.
    assert "--with-scheduler" not in services["worker"]["command"]
    assert services["scheduler"]["command"] == ["python", "manage.py", "runscheduler"]
    assert services["scheduler"]["restart"] == "unless-stopped"


def test_redis_is_durable_and_healthchecked(compose):
    redis = compose["services"]["redis"]
    assert "--appendonly" in redis["command"] and "yes" in redis["command"]
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "redis-data" in compose["volumes"]


def test_migrate_runs_once_before_web_workers_and_scheduler(compose):
    migrate = compose["services"]["migrate"]
    assert migrate["command"] == ["python", "manage.py", "migrate", "--noinput"]
    assert migrate["restart"] == "no"
    for name in ("web", "worker", "scheduler"):
        depends_on = compose["services"][name]["depends_on"]
        assert depends_on["migrate"]["condition"] == "service_completed_successfully"
        assert depends_on["redis"]["condition"] == "service_healthy"
        assert compose["services"][name]["environment"]["REDIS_URL"] == "${REDIS_URL:-redis://redis:6379/0}"


def test_web_and_worker_have_real_healthchecks(compose):
    web, worker = compose["services"]["web"], compose["services"]["worker"]
    assert "http://127.0.0.1:8000/healthz" in " ".join(web["healthcheck"]["test"])
    assert worker["healthcheck"]["test"] == ["CMD", "python", "manage.py", "checkworker"]


def test_web_runs_the_production_command(compose):
    command = compose["services"]["web"]["command"]
    assert command[:2] == ["uvicorn", "taskqueue_site.asgi:application"]
    assert " ".join(command).startswith(
        "uvicorn taskqueue_site.asgi:application --host 0.0.0.0 --port 8000 --workers ${WEB_CONCURRENCY:-2} "
    )
    # the flags the production tests run the server with (tests/support/webserver.py)
    assert " ".join(command).endswith(" " + " ".join(PRODUCTION_FLAGS))


def test_dockerfile_runs_the_same_production_command():
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    assert "pip install --no-cache-dir -r requirements.txt" in dockerfile
    assert "collectstatic" in dockerfile
    cmd = json.loads(next(line for line in dockerfile.splitlines() if line.startswith("CMD "))[4:])
    assert cmd[:2] == ["sh", "-c"]
    assert cmd[2] == (
        "exec uvicorn taskqueue_site.asgi:application --host 0.0.0.0 --port 8000 "
        '--workers "$WEB_CONCURRENCY" ' + " ".join(PRODUCTION_FLAGS)
    )


def test_the_image_sets_the_memory_tunable_the_production_tests_run_with():
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    assert f"GLIBC_TUNABLES={PRODUCTION_ENV['GLIBC_TUNABLES']}\n" in dockerfile


def test_env_example_never_ships_a_secret_and_compose_requires_one(compose):
    example = (PROJECT_ROOT / ".env.example").read_text()
    assert "\nDJANGO_SECRET_KEY=\n" in example
    assert compose["services"]["web"]["environment"]["DJANGO_SECRET_KEY"].startswith("${DJANGO_SECRET_KEY:?")
    assert ".env" in (PROJECT_ROOT / ".dockerignore").read_text().split()


def test_the_schema_check_is_strict():
    schema_file = resources.files("check_jsonschema") / "builtin_schemas" / "vendor" / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"services": {"web": {"image": "x", "restart_policy": "always"}}}, schema)
