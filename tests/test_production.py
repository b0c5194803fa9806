"""Production settings (DJANGO_DEBUG=false) through the production server, uvicorn.

One uvicorn with two worker processes, run as compose.yml runs it, serves the site with
collected static files and a real redis-server; the tests read what a browser would get.
"""

import json
import logging
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from types import SimpleNamespace

import pytest

from taskqueue_site.logs import JSONFormatter
from tests.support.images import noisy_png, png
from tests.support.processes import PROJECT_ROOT, child_env, redis_server, wait_until
from tests.support.webserver import production_env, uvicorn_server

# Runs the production server and a redis-server.
pytestmark = pytest.mark.integration

HTTPS = {"X-Forwarded-Proto": "https"}  # what the TLS proxy in front adds


class NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The production server on a free port, with its static files collected and its own Redis."""
    directory = tmp_path_factory.mktemp("production")
    with redis_server(directory / "redis") as (redis_port, _process):
        env = child_env(
            REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
            DJANGO_STATIC_ROOT=str(directory / "static"),
            DJANGO_SUPERUSER_USERNAME="admin",
            DJANGO_SUPERUSER_EMAIL="admin@example.com",
            DJANGO_SUPERUSER_PASSWORD="a-long-admin-password-for-tests",
            THUMBNAIL_MAX_UPLOAD_BYTES="300000",
        )
        env.pop("DJANGO_LOG_FORMAT", None)
        env = production_env(env, directory)
        for command in (["collectstatic", "--noinput"], ["createsuperuser", "--noinput"]):
            subprocess.run(
                [sys.executable, "manage.py", *command], cwd=PROJECT_ROOT, env=env, check=True, capture_output=True
            )
        log = directory / "uvicorn.log"
        with uvicorn_server(env, log, "--workers", "2") as base_url:
            opener = urllib.request.build_opener(NoRedirects)
            yield SimpleNamespace(url=base_url, log=log, opener=opener)


def fetch(site, path: str, headers: dict[str, str] | None = None, data: bytes | None = None):
    """GET (or POST with data) through the production server; 3xx and 4xx come back as answers."""
    req = urllib.request.Request(site.url + path, data=data, headers=headers or {})
    try:
        return site.opener.open(req, timeout=10)
    except urllib.error.HTTPError as error:
        return error


# --- manage.py check --deploy --------------------------------------------------------------------


def test_check_deploy_reports_nothing_under_production_settings(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "DEBUG"],
        cwd=PROJECT_ROOT,
        env=production_env(child_env(), tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


# --- HTTPS, security headers and cookies -------------------------------------------------------


def test_plain_http_is_redirected_to_https(site):
    response = fetch(site, "/")
    assert response.status == 301
    assert response.headers["Location"] == site.url.replace("http://", "https://") + "/"


def test_https_pages_carry_the_security_headers(site):
    response = fetch(site, "/", HTTPS)
    assert response.status == 200
    headers = response.headers
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
    csrf_cookie = next(value for value in headers.get_all("Set-Cookie") if value.startswith("csrftoken="))
    assert "; Secure" in csrf_cookie
    assert "Server" not in headers  # no advertising of the server and its version


def test_the_session_cookie_is_secure_and_http_only(site):
    login = fetch(site, "/admin/login/", HTTPS)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.read().decode()).group(1)
    # The proxy speaks HTTPS to the browser; this client speaks HTTP, so it sends the Secure cookie itself.
    cookie = next(value for value in login.headers.get_all("Set-Cookie") if value.startswith("csrftoken="))
    form = {"csrfmiddlewaretoken": token, "username": "admin", "password": "a-long-admin-password-for-tests"}
    response = fetch(
        site,
        "/admin/login/?next=/admin/",
        {**HTTPS, "Origin": site.url.replace("http://", "https://"), "Cookie": cookie.split(";")[0]},
        urllib.parse.urlencode(form).encode(),
    )
    assert response.status == 302, response.read()[:500]
    session_cookie = next(value for value in response.headers.get_all("Set-Cookie") if value.startswith("sessionid="))
    assert "; Secure" in session_cookie
    assert "; HttpOnly" in session_cookie


# --- Static files ------------------------------------------------------------------------------


def test_static_files_are_served_by_the_app_server_with_long_caching(site):
    page = fetch(site, "/", HTTPS).read().decode()
    stylesheet = re.search(r'href="(/static/tasks_app/site\.[0-9a-f]{12}\.css)"', page)
    assert stylesheet, "the page should link the hashed (collected) stylesheet"

    response = fetch(site, stylesheet.group(1), {**HTTPS, "Accept-Encoding": "gzip"})
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/css")
    assert response.headers["Content-Encoding"] == "gzip"
    assert "immutable" in response.headers["Cache-Control"]

    assert fetch(site, "/static/tasks_app/no-such-file.css", HTTPS).status == 404


# --- Requests through a2wsgi to Django's WSGI handler (taskqueue_site/asgi.py) ------------------


def multipart(fields: dict[str, str], image: bytes) -> tuple[bytes, str]:
    boundary = "----taskqueue-test-boundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    ]
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    )
    body = "".join(parts).encode() + head.encode() + image + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_an_image_upload_is_accepted_and_one_over_the_limit_refused_with_its_reason(site):
    body, content_type = multipart({"type": "thumbnail"}, png())
    response = fetch(site, "/tasks", {**HTTPS, "Content-Type": content_type}, body)
    assert response.status == 202, response.read()

    # Read and dropped by Django's upload handler; then so large that the server does not read it.
    for too_large in (noisy_png((700, 700)), noisy_png((700, 700)) + bytes(3 * 1024 * 1024)):
        assert len(too_large) > 300_000
        body, content_type = multipart({"type": "thumbnail"}, too_large)
        response = fetch(site, "/tasks", {**HTTPS, "Content-Type": content_type}, body)
        assert response.status == 413
        assert json.loads(response.read())["message"] == "The file is larger than the upload limit of 293 KiB."


def test_head_answers_with_the_headers_of_get_and_no_body(site):
    created = fetch(site, "/tasks", {**HTTPS, "Content-Type": "application/json"}, b'{"type": 1}')
    status_path = "/tasks/" + json.loads(created.read())["data"]["task_id"]
    # A raw socket: http.client never reads a body after HEAD, so it could not tell one was sent.
    host, port = urllib.parse.urlsplit(site.url).hostname, urllib.parse.urlsplit(site.url).port
    with socket.create_connection((host, port), timeout=10) as connection:
        connection.sendall(
            f"HEAD {status_path} HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-Proto: https\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"content-type: application/json" in head.lower()
    assert body == b""


# --- Logs --------------------------------------------------------------------------------------


def log_entries(site) -> list[dict]:
    lines = [line for line in site.log.read_text().splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # fails on any line that is not one JSON event


def test_logs_are_one_json_event_per_line_with_the_job_id(site):
    response = fetch(site, "/tasks", {**HTTPS, "Content-Type": "application/json"}, b'{"type": 1}')
    assert response.status == 202
    task_id = json.loads(response.read())["data"]["task_id"]

    entries = wait_until(
        lambda: (entries := log_entries(site)) and any(entry.get("job_id") == task_id for entry in entries) and entries,
        10,
        "the enqueue to be logged",
    )
    enqueued = next(entry for entry in entries if entry.get("job_id") == task_id)
    assert enqueued["logger"] == "tasks_app.jobs"
    assert {"time", "level", "message", "pid"} <= set(enqueued)
    access = [entry for entry in entries if entry["logger"] == "uvicorn.access" and entry.get("path") == "/tasks"]
    assert access and access[-1]["method"] == "POST" and access[-1]["status_code"] == 202


def test_a_traceback_stays_on_one_line_and_extra_fields_are_kept():
    logger = logging.getLogger("tests.production")
    try:
        raise ValueError("the disk is full")
    except ValueError:
        record = logger.makeRecord(
            logger.name, logging.ERROR, __file__, 1, "job failed", (), sys.exc_info(), extra={"job_id": "abc", "n": 3}
        )
    line = JSONFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["job_id"] == "abc" and entry["n"] == 3
    assert entry["exception"].endswith("ValueError: the disk is full")
