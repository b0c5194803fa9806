"""compose.yml, checked against the Compose Specification's JSON schema (no Docker engine here)."""

import json
from importlib import resources

import jsonschema
import pytest
import yaml

from tests.support.processes import PROJECT_ROOT


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((PROJECT_ROOT / "compose.yml").read_text())


def test_compose_file_matches_the_compose_specification(compose):
    schema_file = resources.files("check_jsonschema") / "builtin_schemas" / "vendor" / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    jsonschema.validate(compose, schema, cls=jsonschema.Draft7Validator)


def test_compose_has_redis_web_and_a_scalable_worker(compose):
    services = compose["services"]
    assert {"redis", "web", "worker"} <= set(services)
    for name in services:
        # A fixed container name would make `--scale worker=3` fail.
        assert "container_name" not in services[name]
    assert services["worker"]["command"][:3] == ["python", "manage.py", "rqworker"]
    assert "--with-scheduler" in services["worker"]["command"]


def test_redis_is_durable_and_healthchecked(compose):
    redis = compose["services"]["redis"]
    assert "--appendonly" in redis["command"] and "yes" in redis["command"]
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "redis-data" in compose["volumes"]


def test_web_and_worker_wait_for_a_healthy_redis(compose):
    for name in ("web", "worker"):
        service = compose["services"][name]
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert service["environment"]["REDIS_URL"] == "redis://redis:6379/0"


def test_dockerfile_installs_the_pinned_requirements():
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    assert "pip install --no-cache-dir -r requirements.txt" in dockerfile
    assert "collectstatic" in dockerfile


def test_the_schema_check_is_strict():
    schema_file = resources.files("check_jsonschema") / "builtin_schemas" / "vendor" / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"services": {"web": {"image": "x", "restart_policy": "always"}}}, schema)
