"""GET /tasks/<id>/events: pushed updates from real workers, served by the ASGI server."""

import asyncio
import time

import pytest

from tests.support.http import create_task, read_events, request
from tests.support.processes import child_env, start_asgi_server, stop


@pytest.fixture
def asgi_server(real_redis, tmp_path):
    """The site under uvicorn, as in production, on a free port."""
    process, base_url = start_asgi_server(child_env(REDIS_URL=real_redis.url), tmp_path / "uvicorn.log")
    try:
        yield base_url
    finally:
        stop(process)


def test_stream_pushes_every_change_and_closes_when_the_task_ends(asgi_server, start_worker):
    task_id = create_task(asgi_server, 1)
    start_worker(burst=False, unit_seconds=2)
    started = time.monotonic()
    events = read_events(f"{asgi_server}/tasks/{task_id}/events")

    assert time.monotonic() - started < 20
    assert {name for name, _ in events} == {"status"}
    statuses = [data["task_status"] for _, data in events]
    assert statuses[0] in {"queued", "started"}
    assert statuses[-1] == "finished"
    progress = [data["progress"] for _, data in events if data["task_status"] == "started"]
    assert len(progress) >= 3 and progress == sorted(progress)  # several pushes while it ran
    assert events[-1][1]["task_result"] is True


def test_stream_of_a_task_that_already_ended_sends_one_event(asgi_server, start_worker):
    task_id = create_task(asgi_server, 0)
    assert start_worker().wait(timeout=30) == 0
    events = read_events(f"{asgi_server}/tasks/{task_id}/events", timeout=5)
    assert [data["task_status"] for _, data in events] == ["finished"]


def test_stream_of_an_unknown_task_is_404_json(asgi_server):
    reply = request(f"{asgi_server}/tasks/no-such-task/events")
    assert reply.status == 404 and reply.body["status"] == "error"


def test_one_stream_follows_several_tasks(asgi_server, start_worker):
    ids = [create_task(asgi_server, 0) for _ in range(3)]
    start_worker(burst=False)
    query = "&".join(f"id={task_id}" for task_id in ids) + "&id=missing-task"
    events = read_events(f"{asgi_server}/tasks/events?{query}")
    finished = {data["task_id"] for name, data in events if name == "status" and data["task_status"] == "finished"}
    assert finished == set(ids)
    assert ("missing", {"task_id": "missing-task"}) in events


async def open_stream(port: int, task_id: str) -> asyncio.StreamWriter:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /tasks/{task_id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=30)
    assert head.startswith(b"HTTP/1.1 200"), head
    # The body is chunked; wait for the stream's first status event, the current "queued".
    first_event = await asyncio.wait_for(reader.readuntil(b'"task_status": "queued"'), timeout=30)
    assert b"event: status" in first_event
    return writer


def test_two_hundred_open_streams_do_not_block_new_work(asgi_server):
    """Hundreds of browsers watching: POST /tasks still answers at once."""
    port = int(asgi_server.rsplit(":", 1)[1])
    waiting = create_task(asgi_server, 3)  # no worker: stays queued, so every stream stays open

    async def scenario():
        writers = await asyncio.gather(*(open_stream(port, waiting) for _ in range(200)))
        try:
            started = time.monotonic()
            reply = await asyncio.to_thread(request, f"{asgi_server}/tasks", "POST", {"type": 1})
            elapsed = time.monotonic() - started
            status_reply = await asyncio.to_thread(request, f"{asgi_server}/tasks/{waiting}")
            return reply, elapsed, status_reply, len(writers)
        finally:
            for writer in writers:
                writer.close()

    reply, elapsed, status_reply, opened = asyncio.run(scenario())
    assert opened == 200
    assert reply.status == 202
    assert status_reply.status == 200
    assert elapsed < 2, f"POST /tasks took {elapsed:.2f}s with 200 streams open"
