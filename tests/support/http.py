"""A tiny HTTP client for tests that talk to a real server over loopback."""

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]


def request(url: str, method: str = "GET", payload: Any = None, timeout: float = 10, **extra: str) -> Reply:
    """Extra headers come as keyword arguments, with underscores: X_Cancel_Token="..."."""
    data = None if payload is None else json.dumps(payload).encode()
    headers = {"Accept": "application/json", **{name.replace("_", "-"): value for name, value in extra.items()}}
    if data is not None:
        headers["Content-Type"] = "application/json"
    return send(urllib.request.Request(url, data=data, method=method, headers=headers), timeout)


def send(req: urllib.request.Request, timeout: float = 10) -> Reply:
    """Send a request and read its JSON answer, whatever the status."""
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return Reply(response.status, json.loads(response.read()), dict(response.headers))
    except urllib.error.HTTPError as error:
        return Reply(error.code, json.loads(error.read()), dict(error.headers))


def create_task(base_url: str, task_type: int) -> str:
    reply = request(f"{base_url}/tasks", "POST", {"type": task_type})
    assert reply.status == 202, reply.body
    return reply.body["data"]["task_id"]


def task_status(base_url: str, task_id: str) -> dict:
    reply = request(f"{base_url}/tasks/{task_id}")
    assert reply.status == 200, reply.body
    return reply.body["data"]


def read_events(url: str, timeout: float = 30) -> list[tuple[str, dict]]:
    """Read a whole event stream (it ends by itself when the task ends)."""
    events = []
    with urllib.request.urlopen(url, timeout=timeout) as response:
        assert response.headers["Content-Type"] == "text/event-stream"
        name = None
        for raw in response:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((name, json.loads(line.removeprefix("data: "))))
    return events
