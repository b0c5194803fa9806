"""The ASGI application the production server runs (`python -m taskqueue_site.serve taskqueue_site.asgi:application`).

Only the event streams need ASGI (hundreds may stay open without holding a thread each). Django
runs every other request faster through its WSGI handler: under its ASGI handler each classic
middleware hops to a thread and back (about 30 hops a request, 10x slower here). So this
application routes: streams to Django's ASGI handler, everything else to Django's WSGI handler
on a small thread pool, through `WSGIBridge`.

The bridge reads the request body on the event loop, hands the whole request to a thread in one
hop and gets the whole response back in one hop. A general adapter such as a2wsgi hops between
the loop and the thread for every read and write instead: 0.23 ms of overhead per request here,
against 0.08 ms for this (README, "Benchmarks").
"""

import asyncio
import gc
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any

from django.conf import settings
from django.core.asgi import get_asgi_application
from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "taskqueue_site.settings")

logger = logging.getLogger(__name__)

# Responses up to this size go out in one message; larger ones (big static files) are streamed.
BUFFERED_RESPONSE_BYTES = 1024 * 1024
# Request bodies are kept in memory up to this size, then in a temporary file.
SPOOLED_BODY_BYTES = 1024 * 1024
# A streamed response gives up on a client that takes longer than this to accept the next piece,
# so a client that stops reading cannot hold a pool thread.
STREAM_SEND_TIMEOUT_SECONDS = 30
# Header names are mapped to HTTP_* keys by upper-casing and turning "-" into "_"; a name that
# already holds "_" could pass for another header (X-Forwarded_For), so it is dropped, as Django's
# own development server does.
HEADER_NAME = re.compile(rb"^[A-Za-z0-9-]+$")

Message = dict[str, Any]


def largest_request_body() -> int:
    """The most any view accepts (an image upload and the fields beside it); larger bodies are not read."""
    return settings.THUMBNAIL_MAX_UPLOAD_BYTES + max(
        settings.TASKS_MAX_BODY_BYTES, settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    )


class BodyTooLarge(Exception):
    """A body without a Content-Length that grew past largest_request_body()."""


class ClientGone(Exception):
    """The client disconnected before it sent the whole body, or stopped reading a streamed response."""


class WSGIBridge:
    """Run a WSGI application for ASGI HTTP requests, each request on one thread of a pool."""

    def __init__(self, wsgi_application: Callable, threads: int):
        self.wsgi_application = wsgi_application
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="wsgi")

    async def __call__(self, scope: Message, receive: Callable, send: Callable) -> None:
        try:
            body = await read_body(scope, receive, largest_request_body())
        except ClientGone:
            return
        except BodyTooLarge:
            await send_whole_response(send, 413, [(b"content-type", b"application/json")], TOO_LARGE_BODY)
            return
        loop = asyncio.get_running_loop()
        streaming = StreamingSend(loop, send)
        try:
            environ = wsgi_environ(scope, body.file)
            if body.complete:  # a chunked body has no Content-Length; Django reads that many bytes
                environ["CONTENT_LENGTH"] = str(body.size)
            status, headers, content = await loop.run_in_executor(
                self.executor, self.respond, environ, streaming.send_from_thread
            )
        except ClientGone:
            logger.warning("gave up streaming %s to a client that stopped reading", scope.get("path"))
            return
        except Exception:
            logger.exception("the WSGI bridge failed on %s %s", scope.get("method"), scope.get("path"))
            if not streaming.started:
                await send_whole_response(send, 500, [(b"content-type", b"text/plain")], b"Internal server error.")
            return
        finally:
            body.file.close()
        if not streaming.started:
            await send_whole_response(send, status, headers, content)

    def respond(self, environ: dict, send_from_thread: Callable[[Message], None]) -> tuple[int, list, bytes]:
        """In a pool thread: run the application, close its response (Django's request_finished).

        Returns the whole response, unless it outgrows BUFFERED_RESPONSE_BYTES: then it is sent
        from here, piece by piece, and what is returned is ignored.
        """
        chunks: list[bytes] = []
        head: list = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info=None) -> Callable[[bytes], None]:
            head[:] = [
                int(status[:3]),
                [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers],
            ]
            return chunks.append

        iterable: Iterable[bytes] = self.wsgi_application(environ, start_response)
        try:
            size = sum(map(len, chunks))
            iterator = iter(iterable)
            for chunk in iterator:
                chunks.append(chunk)
                size += len(chunk)
                if size > BUFFERED_RESPONSE_BYTES:
                    send_from_thread({"type": "http.response.start", "status": head[0], "headers": head[1]})
                    send_from_thread({"type": "http.response.body", "body": b"".join(chunks), "more_body": True})
                    for rest in iterator:
                        if rest:
                            send_from_thread({"type": "http.response.body", "body": rest, "more_body": True})
                    send_from_thread({"type": "http.response.body", "body": b""})
                    return head[0], head[1], b""
            return head[0], head[1], b"".join(chunks)
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                close()


class StreamingSend:
    """Lets a pool thread send a large response through the event loop, waiting for each message."""

    def __init__(self, loop: asyncio.AbstractEventLoop, send: Callable):
        self.loop = loop
        self.send = send
        self.started = False

    def send_from_thread(self, message: Message) -> None:
        self.started = True
        sent = asyncio.run_coroutine_threadsafe(self.send(message), self.loop)
        try:
            sent.result(timeout=STREAM_SEND_TIMEOUT_SECONDS)
        except TimeoutError:
            sent.cancel()
            raise ClientGone from None


TOO_LARGE_BODY = b'{"status": "error", "message": "The request body is too large."}'


async def send_whole_response(send: Callable, status: int, headers: list, content: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})


@dataclass
class RequestBody:
    file: IO[bytes]
    size: int  # bytes read
    complete: bool  # False when a declared Content-Length over the limit left it unread


async def read_body(scope: Message, receive: Callable, limit: int) -> RequestBody:
    """Read the whole request body into a file object (memory first, then disk).

    A body whose Content-Length is over `limit` is not read at all: the application sees the
    header and refuses the request itself (413 with its own message). One without a length that
    grows past `limit` raises BodyTooLarge.
    """
    body = tempfile.SpooledTemporaryFile(max_size=SPOOLED_BODY_BYTES)  # noqa: SIM115 - closed by the caller
    declared = dict(scope["headers"]).get(b"content-length", b"")
    if declared.isdigit() and int(declared) > limit:
        return RequestBody(body, 0, complete=False)
    size = 0
    more = True
    try:
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            body.write(chunk)
            more = message.get("more_body", False)
    except BaseException:
        body.close()
        raise
    body.seek(0)
    return RequestBody(body, size, complete=True)


def wsgi_environ(scope: Message, body) -> dict[str, Any]:
    """The WSGI environ (PEP 3333) of an ASGI HTTP request."""
    # WSGI carries paths as their raw bytes decoded as latin-1; ASGI gives them decoded from UTF-8.
    script_name = scope.get("root_path", "").encode().decode("latin-1")
    path = scope["path"].encode().decode("latin-1")
    if script_name and path.startswith(script_name):
        path = path[len(script_name) :]
    server_name, server_port = scope.get("server") or ("localhost", None)
    environ = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": script_name,
        "PATH_INFO": path,
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": server_name,
        "SERVER_PORT": str(server_port or (443 if scope.get("scheme") == "https" else 80)),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": body,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    if scope.get("client"):
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = scope["client"][0], str(scope["client"][1])
    for raw_name, raw_value in scope["headers"]:
        if not HEADER_NAME.match(raw_name):
            continue
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        key = name if name in {"CONTENT_TYPE", "CONTENT_LENGTH"} else f"HTTP_{name}"
        value = raw_value.decode("latin-1")
        if key in environ:  # a repeated header: one value, as HTTP allows joining them
            value = environ[key] + ("; " if key == "HTTP_COOKIE" else ",") + value
        environ[key] = value
    return environ


django_asgi = get_asgi_application()
# Four threads a process: requests are short and mostly CPU, and more threads only fight over the
# GIL (GET /tasks/<id> ran 25% faster with 4 than with 8 here); raise it if requests wait on a slow
# database or Redis.
django_wsgi = WSGIBridge(get_wsgi_application(), threads=int(os.environ.get("WEB_THREADS", "4")))

STREAM_PATH = re.compile(r"^/tasks/(?:[^/]+/)?events/?$")

# What is loaded at startup (Django, the apps, the URLconf and the views it imports) lives as
# long as the process. Freezing it keeps the collector's full passes, every few seconds under
# load, to what requests made: they paused a request for 28 ms here, 3 ms frozen (README,
# "Benchmarks"). Startup's garbage is collected first, so it is not kept for good.
get_resolver().url_patterns  # noqa: B018 - imports the URLconf and views now, not on the first request
gc.collect()
gc.freeze()


async def application(scope, receive, send):
    if scope["type"] == "http" and not STREAM_PATH.match(scope["path"]):
        await django_wsgi(scope, receive, send)
    else:
        await django_asgi(scope, receive, send)
