"""The production entry point's bridge from ASGI to Django's WSGI handler, driven message by message.

Through the real server (uvicorn) it is exercised by tests/test_production.py and every test that
starts the site; here each ASGI message is scripted, so every branch is reached.
"""

import asyncio
import threading

import pytest

from taskqueue_site import asgi
from taskqueue_site.asgi import WSGIBridge, wsgi_environ


def http_scope(path: str = "/tasks", method: str = "GET", headers=(), **extra) -> dict:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "query_string": b"",
        "headers": [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers],
        "scheme": "http",
        "server": ("127.0.0.1", 8000),
        "client": ("192.0.2.7", 51234),
        "http_version": "1.1",
        **extra,
    }


def run(
    bridge: WSGIBridge, scope: dict, body_parts=(b"",), disconnect: bool = False, send_delay: float = 0
) -> list[dict]:
    """Send the request (its body in parts) through the bridge; return the messages it sent back.

    `send_delay`: how long the client takes to accept each piece of a response body.
    """
    incoming = [
        {"type": "http.request", "body": part, "more_body": index < len(body_parts) - 1}
        for index, part in enumerate(body_parts)
    ]
    if disconnect:
        incoming[-1] = {"type": "http.disconnect"}
    sent: list[dict] = []

    async def receive():
        return incoming.pop(0)

    async def send(message):
        if message["type"] == "http.response.body":
            await asyncio.sleep(send_delay)
        sent.append(message)

    asyncio.run(bridge(scope, receive, send))
    return sent


class Recorder:
    """A WSGI application that keeps what it was given and answers with a chosen response."""

    def __init__(self, chunks=(b"ok",), status="200 OK", headers=(("Content-Type", "text/plain"),)):
        self.chunks, self.status, self.headers = list(chunks), status, list(headers)
        self.environ: dict | None = None
        self.body = b""
        self.threads: list[str] = []
        self.closed = False

    def __call__(self, environ, start_response):
        self.environ = environ
        self.body = environ["wsgi.input"].read()
        self.threads.append(threading.current_thread().name)
        start_response(self.status, self.headers)
        return self

    def __iter__(self):
        yield from self.chunks

    def close(self):
        self.threads.append(threading.current_thread().name)
        self.closed = True


def body_of(messages: list[dict]) -> bytes:
    return b"".join(message.get("body", b"") for message in messages if message["type"] == "http.response.body")


# --- The environ ---------------------------------------------------------------------------------


def test_the_environ_carries_the_request_as_pep_3333_says():
    scope = http_scope(
        "/café/tasks",
        "POST",
        headers=[
            ("Content-Type", "application/json"),
            ("Content-Length", "11"),
            ("Accept", "text/html"),
            ("Accept", "application/json"),
            ("Cookie", "a=1"),
            ("Cookie", "b=2"),
            ("X-Forwarded_For", "203.0.113.9"),  # an underscore: could pass for X-Forwarded-For
        ],
        root_path="/app",
        query_string=b"q=%C3%A9&x=1",
        scheme="https",
        server=("example.org", None),
    )
    scope["path"] = "/app/café/tasks"
    environ = wsgi_environ(scope, body=None)
    assert environ["REQUEST_METHOD"] == "POST"
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/app", "/café/tasks".encode().decode("latin-1"))
    assert environ["QUERY_STRING"] == "q=%C3%A9&x=1"
    assert (environ["CONTENT_TYPE"], environ["CONTENT_LENGTH"]) == ("application/json", "11")
    assert environ["HTTP_ACCEPT"] == "text/html,application/json"
    assert environ["HTTP_COOKIE"] == "a=1; b=2"
    assert "HTTP_X_FORWARDED_FOR" not in environ
    assert (environ["wsgi.url_scheme"], environ["SERVER_NAME"], environ["SERVER_PORT"]) == (
        "https",
        "example.org",
        "443",
    )
    assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == ("192.0.2.7", "51234")
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"


# --- Request bodies ------------------------------------------------------------------------------


def test_a_body_sent_in_parts_reaches_the_application_whole(monkeypatch):
    monkeypatch.setattr(asgi, "SPOOLED_BODY_BYTES", 8)  # past this, the body waits in a temporary file
    app = Recorder()
    parts = [b'{"type": ', b"1, ", b'"note": "' + b"x" * 50 + b'"}']
    sent = run(WSGIBridge(app, threads=1), http_scope(method="POST"), parts)
    assert app.body == b"".join(parts)
    assert sent == [
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]},
        {"type": "http.response.body", "body": b"ok"},
    ]


def test_a_chunked_body_without_a_length_is_given_the_length_that_was_read():
    app = Recorder()
    run(
        WSGIBridge(app, threads=1),
        http_scope(method="POST", headers=[("Transfer-Encoding", "chunked")]),
        [b"ab", b"cd"],
    )
    assert (app.environ["CONTENT_LENGTH"], app.body) == ("4", b"abcd")


def test_a_declared_length_over_the_limit_is_left_unread_for_the_application_to_refuse(settings):
    declared = str(asgi.largest_request_body() + 1)
    app = Recorder(status="413 Payload Too Large")
    sent = run(WSGIBridge(app, threads=1), http_scope(method="POST", headers=[("Content-Length", declared)]), [b"x"])
    assert app.environ["CONTENT_LENGTH"] == declared and app.body == b""
    assert sent[0]["status"] == 413


def test_an_undeclared_body_that_grows_past_the_limit_is_refused_without_the_application(monkeypatch):
    monkeypatch.setattr(asgi, "largest_request_body", lambda: 10)
    app = Recorder()
    sent = run(WSGIBridge(app, threads=1), http_scope(method="POST"), [b"123456", b"789012"])
    assert app.environ is None
    assert sent[0]["status"] == 413
    assert b"too large" in body_of(sent)


def test_a_client_that_leaves_mid_body_gets_nothing_and_runs_nothing():
    app = Recorder()
    assert run(WSGIBridge(app, threads=1), http_scope(method="POST"), [b"part", b""], disconnect=True) == []
    assert app.environ is None


# --- Responses -----------------------------------------------------------------------------------


def test_a_large_response_is_streamed_and_closed_on_the_thread_that_ran_the_request(monkeypatch):
    monkeypatch.setattr(asgi, "BUFFERED_RESPONSE_BYTES", 10)
    app = Recorder(chunks=[b"0123456789", b"abcdefghij", b"", b"klm"])
    sent = run(WSGIBridge(app, threads=4), http_scope())
    assert sent[0]["type"] == "http.response.start"
    bodies = sent[1:]
    assert len(bodies) > 2 and all(message["more_body"] for message in bodies[:-1])
    assert not bodies[-1].get("more_body", False)
    assert body_of(sent) == b"0123456789abcdefghijklm"
    # Django's request_finished (closing database connections) runs where the request ran.
    assert app.closed and len(set(app.threads)) == 1


def test_a_client_that_stops_reading_a_streamed_response_frees_the_thread(monkeypatch, caplog):
    monkeypatch.setattr(asgi, "BUFFERED_RESPONSE_BYTES", 4)
    monkeypatch.setattr(asgi, "STREAM_SEND_TIMEOUT_SECONDS", 0.05)
    app = Recorder(chunks=[b"01234", b"56789", b"abcde"])
    sent = run(WSGIBridge(app, threads=1), http_scope(), send_delay=0.5)
    assert sent[0]["type"] == "http.response.start"
    assert app.closed  # the response was given up and closed, not left holding the thread
    assert "gave up streaming /tasks to a client that stopped reading" in caplog.text


def test_a_failure_in_the_middle_of_a_streamed_response_ends_it_without_a_second_start(monkeypatch, caplog):
    monkeypatch.setattr(asgi, "BUFFERED_RESPONSE_BYTES", 4)

    class Breaks(Recorder):
        def __iter__(self):
            yield b"0123456789"
            raise RuntimeError("the file went away")

    app = Breaks()
    sent = run(WSGIBridge(app, threads=1), http_scope())
    assert [message["type"] for message in sent] == ["http.response.start", "http.response.body"]
    assert sent[1]["more_body"] is True  # never a complete-looking response
    assert app.closed and "the WSGI bridge failed on GET /tasks" in caplog.text


def test_an_application_that_fails_outside_django_gets_a_plain_500(caplog):
    def broken(environ, start_response):
        raise RuntimeError("bug in the handler")

    sent = run(WSGIBridge(broken, threads=1), http_scope())
    assert sent[0]["status"] == 500
    assert body_of(sent) == b"Internal server error."
    assert "the WSGI bridge failed on GET /tasks" in caplog.text


@pytest.mark.django_db
def test_django_answers_through_the_bridge(fake_redis):
    sent = run(
        WSGIBridge(asgi.get_wsgi_application(), threads=2),
        http_scope("/tasks", "POST", headers=[("Content-Type", "application/json"), ("Content-Length", "11")]),
        [b'{"type": 0}'],
    )
    assert sent[0]["status"] == 202
    assert b'"task_id"' in body_of(sent)


@pytest.mark.django_db
def test_django_reads_a_chunked_json_post_through_the_bridge(fake_redis):
    sent = run(
        WSGIBridge(asgi.get_wsgi_application(), threads=2),
        http_scope("/tasks", "POST", headers=[("Content-Type", "application/json"), ("Transfer-Encoding", "chunked")]),
        [b'{"type"', b": 0}"],
    )
    assert sent[0]["status"] == 202, body_of(sent)
