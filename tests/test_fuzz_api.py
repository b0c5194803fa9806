"""Property-based fuzzing of every API endpoint: no 5xx, every error in the JSON shape, and
every answer valid against the OpenAPI document the site serves at /openapi.json."""

import json
import re
from collections import Counter
from urllib.parse import unquote

import jsonschema
import pytest
from django.test import Client
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

REQUESTS_PER_RUN = 1500
STATS: Counter = Counter()

ids = st.one_of(
    st.uuids().map(str),
    st.text(min_size=1, max_size=80),
    st.sampled_from(["..", "../../etc/passwd", "%2e%2e%2f", "rq:job:*", "a" * 200, "\x00", "☃", "events"]),
    st.from_regex(r"[A-Za-z0-9_-]{1,70}", fullmatch=True),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
submissions = st.fixed_dictionaries(
    {},
    optional={
        "type": st.one_of(st.integers(-(10**30), 10**30), st.sampled_from([0, 1, 2, 3, "1", "3"]), json_values),
        "delay": st.one_of(st.integers(-10, 10**9), json_values),
        "queue": st.one_of(st.sampled_from(["high", "default", "low", "urgent", ""]), json_values),
        "extra": json_values,
    },
)
content_types = st.sampled_from(
    [
        "application/json",
        "application/json; charset=latin-1",
        "application/x-www-form-urlencoded",
        "text/plain",
        "application/xml",
        "",
        "multipart/form-data; boundary=zzz",
        "application/octet-stream",
    ]
)
bodies = st.one_of(
    submissions.map(lambda fields: json.dumps(fields, default=str).encode()),
    st.binary(max_size=2048),
    st.text(max_size=500).map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.integers(0, 40_000).map(lambda size: b'{"type": 1, "pad": "' + b"x" * size + b'"}'),
    st.sampled_from([b'{"type": 1', b"\xff\xfe\x00", b"type=1&type=2", b"[]", b"null", b'{"type": 1e999}']),
)


@st.composite
def api_requests(draw):
    task_id = draw(ids)
    quoted = re.sub(r"[^A-Za-z0-9_.~-]", lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), task_id)
    path = draw(
        st.sampled_from(
            [
                "/tasks",
                "/tasks/",
                f"/tasks/{quoted}",
                f"/tasks/{quoted}/cancel",
                f"/tasks/{quoted}/events",
                f"/tasks/events?id={quoted}",
                "/tasks/events",
                f"/tasks/{quoted}/{quoted}/x",
                "/openapi.json",
            ]
        )
    )
    method = draw(st.sampled_from(["GET", "POST", "POST", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]))
    return method, path, draw(content_types), draw(bodies)


def operation_for(document: dict, method: str, path: str) -> tuple[str | None, dict | None]:
    bare = unquote(path.split("?")[0])  # what Django routes on
    for template, operations in document["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "/?$"
        if re.match(pattern, bare) and not (template == "/tasks/{task_id}" and bare.rstrip("/") == "/tasks/events"):
            return template, operations.get(method.lower())
    return None, None


@pytest.fixture
def fuzz_site(fake_redis, settings):
    settings.DEBUG = False  # production error handlers: JSON for API paths
    settings.TASKS_RATE_LIMIT = "off"
    return Client(), json.loads(Client().get("/openapi.json").content)


def check(response, method: str, path: str, document: dict) -> None:
    status = response.status_code
    STATS[status] += 1
    assert status < 500, (method, path, status)
    if method == "HEAD" or response.get("Content-Type", "").startswith("text/event-stream"):
        return
    template, operation = operation_for(document, method, path)
    if template is None or path.startswith("/openapi.json"):
        if status >= 400:
            body = json.loads(response.content)
            jsonschema.validate(body, document_error(document))
        return
    body = json.loads(response.content)
    if operation is None:
        assert status == 405, (method, path, status)
        jsonschema.validate(body, document_error(document))
        return
    assert str(status) in operation["responses"], (method, path, status, body)
    schema = operation["responses"][str(status)]["content"]["application/json"]["schema"]
    jsonschema.validate(body, schema)


def document_error(document: dict) -> dict:
    return document["paths"]["/tasks"]["post"]["responses"]["400"]["content"]["application/json"]["schema"]


@settings(
    max_examples=REQUESTS_PER_RUN,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(request=api_requests())
# Valid submissions are a thin slice of what the strategies draw (a few in 1,500, none in some
# runs): these make every run cover the 202 answers too.
@example(request=("POST", "/tasks", "application/json", b'{"type": 1}'))
@example(request=("POST", "/tasks/", "application/x-www-form-urlencoded", b"type=3&queue=high&delay=5"))
def test_no_request_yields_a_5xx_or_breaks_the_contract(fuzz_site, request):
    client, document = fuzz_site
    method, path, content_type, body = request
    kwargs = {"content_type": content_type} if method in {"POST", "PUT", "PATCH", "DELETE"} else {}
    if kwargs:
        kwargs["data"] = body
    response = client.generic(method, path, **kwargs) if kwargs else client.generic(method, path)
    if response.streaming and not response.is_async:  # event streams are async: not read here
        b"".join(response.streaming_content)
    check(response, method, path, document)


def test_the_fuzzer_covered_the_ground():
    """Runs after the fuzz test (same module): it tried enough requests, of enough kinds."""
    if not STATS:
        pytest.skip("run together with the fuzz test")
    assert sum(STATS.values()) >= 1000
    assert {202, 400, 404, 405} <= set(STATS)


def test_the_document_is_valid_openapi_shape(fake_redis):
    document = Client().get("/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == {
        "/tasks",
        "/tasks/{task_id}",
        "/tasks/{task_id}/cancel",
        "/tasks/{task_id}/events",
        "/tasks/events",
    }
    for operations in document["paths"].values():
        for operation in operations.values():
            for response in operation["responses"].values():
                for media in response.get("content", {}).values():
                    if "schema" in media:
                        jsonschema.Draft202012Validator.check_schema(media["schema"])
