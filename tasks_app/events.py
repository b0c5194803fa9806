"""Push updates: workers publish every status and progress change on one Redis pub/sub channel;
each web process holds one subscription and fans events out to its open streams' queues.
"""

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import redis
from asgiref.sync import sync_to_async
from django.conf import settings

from tasks_app import connections
from tasks_app.connections import DEFAULT_QUEUE, QueueUnavailable

logger = logging.getLogger(__name__)

CHANNEL = "taskqueue:events"
KEEPALIVE_SECONDS = 15
# A reconnecting browser waits this long before trying the stream again.
PREAMBLE = b"retry: 3000\n\n"
KEEPALIVE = b": keepalive\n\n"
RESYNC = object()  # "events may have been missed: read the status again"


def publish(connection: redis.Redis, status: dict[str, Any]) -> None:
    """Publish a task's status (the GET /tasks/<id> shape) to every listening web process."""
    message = json.dumps({**status, "changed_at": time.time()})
    try:
        connection.publish(CHANNEL, message)
    except redis.RedisError as exc:  # pollers still see the change; never fail the job for this
        logger.warning("job_id=%s event not published: %s", status.get("task_id"), exc)


def publish_status_change(sender, job, task, **kwargs) -> None:
    """Receiver of signals.job_status_changed."""
    publish(job.connection, task.as_dict())


def sse(data: dict[str, Any], event: str = "status") -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


class StreamState:
    """What one stream still waits for, and what it last sent per task (to skip repeats)."""

    def __init__(self, task_ids: list[str], is_terminal: Callable[[str], bool]):
        self.pending = set(task_ids)
        self.last_sent: dict[str, tuple] = {}
        self.is_terminal = is_terminal

    def frame(self, status: dict[str, Any]) -> bytes | None:
        task_id = status.get("task_id")
        if task_id not in self.pending:
            return None
        fingerprint = (status.get("task_status"), status.get("progress"), status.get("attempt"))
        if self.last_sent.get(task_id) == fingerprint:
            return None
        self.last_sent[task_id] = fingerprint
        if self.is_terminal(status.get("task_status", "")):
            self.pending.discard(task_id)
        return sse(status)

    def initial_frame(self, task_id: str, status: dict[str, Any] | None) -> bytes | None:
        """Frame a freshly read status; a task that no longer exists gets a `missing` event."""
        if status is None:
            self.pending.discard(task_id)
            return sse({"task_id": task_id}, event="missing")
        return self.frame(status)


class EventHub:
    """One Redis subscription for this event loop, fanned out to per-stream queues."""

    def __init__(self) -> None:
        self.listeners: dict[str, set[asyncio.Queue]] = {}
        self.connected = asyncio.Event()
        self.runner: asyncio.Task | None = None

    async def ready(self) -> None:
        """Start the subscription if it is not running; wait until it is connected (TimeoutError)."""
        if self.runner is None or self.runner.done():
            self.runner = asyncio.get_running_loop().create_task(self.run())
        await asyncio.wait_for(self.connected.wait(), timeout=settings.REDIS_CONNECT_TIMEOUT + 1.5)

    def listen(self, task_ids: list[str]) -> asyncio.Queue:
        """Register interest in some tasks; the returned queue receives their status dicts."""
        queue: asyncio.Queue = asyncio.Queue(maxsize=256)
        for task_id in task_ids:
            self.listeners.setdefault(task_id, set()).add(queue)
        return queue

    def forget(self, task_ids: list[str], queue: asyncio.Queue) -> None:
        for task_id in task_ids:
            queues = self.listeners.get(task_id, set())
            queues.discard(queue)
            if not queues:
                self.listeners.pop(task_id, None)

    def deliver(self, task_id: str, item: Any) -> None:
        for queue in list(self.listeners.get(task_id, ())):
            try:
                queue.put_nowait(item)
            except asyncio.QueueFull:  # a stalled client: make it re-read instead of growing
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(RESYNC)

    async def run(self) -> None:
        """Subscribe, dispatch, and resubscribe after a lost connection."""
        while True:
            client = connections.build_subscription_connection(settings.RQ_QUEUES[DEFAULT_QUEUE])
            try:
                async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    self.connected.set()
                    for task_id in list(self.listeners):  # reconnected: statuses may have moved
                        self.deliver(task_id, RESYNC)
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self.dispatch(message["data"])
            except (redis.RedisError, OSError) as exc:
                logger.warning("event subscription lost (%s); reconnecting", exc)
            finally:
                self.connected.clear()
                await client.aclose()
            await asyncio.sleep(0.5)

    def dispatch(self, raw: bytes) -> None:
        try:
            status = json.loads(raw)
            self.deliver(status["task_id"], status)
        except (ValueError, KeyError, TypeError):
            logger.warning("ignoring a malformed event: %r", raw[:200])


_hubs: dict[asyncio.AbstractEventLoop, EventHub] = {}


def hub() -> EventHub:
    return _hubs.setdefault(asyncio.get_running_loop(), EventHub())


async def stream_async(
    task_ids: list[str],
    read_status: Callable[[str], Any],
    is_terminal: Callable[[str], bool],
) -> AsyncIterator[bytes]:
    """Yield SSE frames until every task has ended; keepalives re-read them, as RQ's cleanup publishes nothing."""
    state = StreamState(task_ids, is_terminal)
    events_hub = hub()
    queue = events_hub.listen(task_ids)
    try:
        yield PREAMBLE
        for frame in await resync(state, read_status):
            yield frame
        while state.pending:
            try:
                item = await asyncio.wait_for(queue.get(), timeout=KEEPALIVE_SECONDS)
            except TimeoutError:
                item = RESYNC
                yield KEEPALIVE
            frames = await resync(state, read_status) if item is RESYNC else [state.frame(item)]
            for frame in frames:
                if frame:
                    yield frame
    except QueueUnavailable as exc:  # the browser reconnects in a few seconds, or polls
        logger.warning("event stream ended: %s", exc)
    finally:
        events_hub.forget(task_ids, queue)


async def resync(state: StreamState, read_status: Callable[[str], Any]) -> list[bytes]:
    """Read the current status of every pending task (once at the start and after a gap)."""
    frames = []
    for task_id in sorted(state.pending):
        status = await sync_to_async(read_status, thread_sensitive=False)(task_id)
        frames.append(state.initial_frame(task_id, status))
    return [frame for frame in frames if frame]
