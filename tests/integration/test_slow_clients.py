"""What the production server's connection options enforce against idle and too many clients."""

import socket
import time
import urllib.error
import urllib.request

import pytest

from tests.support.processes import child_env, redis_server, wait_until
from tests.support.webserver import PRODUCTION_FLAGS, production_env, uvicorn_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def small_site(tmp_path_factory):
    """The production command, with its connection limit lowered to 4 to reach it in a test."""
    directory = tmp_path_factory.mktemp("slow-clients")
    with redis_server(directory / "redis") as (redis_port, _process):
        env = production_env(child_env(REDIS_URL=f"redis://127.0.0.1:{redis_port}/0"), directory)
        with uvicorn_server(env, directory / "uvicorn.log", "--limit-concurrency", "4") as base_url:
            yield base_url


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_production_command_limits_connections_and_idle_keep_alive():
    flags = " ".join(PRODUCTION_FLAGS)
    assert "--limit-concurrency 800" in flags and "--timeout-keep-alive 5" in flags


def test_beyond_the_connection_limit_a_request_gets_a_503_not_a_reset(small_site):
    host, port = small_site.removeprefix("http://").split(":")
    idle = [socket.create_connection((host, int(port)), timeout=5) for _ in range(4)]
    try:
        # 503 as soon as the server has accepted the four idle ones.
        wait_until(lambda: status_of(f"{small_site}/healthz") == 503, 5, "no 503 beyond the connection limit")
    finally:
        for connection in idle:
            connection.close()
    wait_until(lambda: status_of(f"{small_site}/healthz") == 200, 5, "no service once the idle clients left")


def test_an_idle_keep_alive_connection_is_closed_after_its_timeout(small_site):
    host, port = small_site.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=15) as connection:
        connection.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        answered = time.monotonic()
        received = b""
        while chunk := connection.recv(65536):  # the answer, then b"" once the server closes
            received += chunk
        assert received.startswith(b"HTTP/1.1 ")
        assert 4 <= time.monotonic() - answered <= 10
