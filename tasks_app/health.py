"""Health: GET /healthz for load balancers (served by HealthCheckMiddleware), and the admin's health page."""

import logging
import math
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count
from django.db.models.functions import TruncMinute
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django_rq.settings import get_queues_map
from rq.registry import CanceledJobRegistry
from rq.serializers import JSONSerializer
from rq.utils import now
from rq.worker import Worker

from tasks_app import history
from tasks_app.connections import QueueUnavailable, get_queue, redis_outage_as_unavailable, separate_client
from tasks_app.models import JobRecord
from tasks_app.responses import json_error, json_methods, json_success

logger = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"
WINDOW_MINUTES = 60
BUCKET_MINUTES = 5  # wait and run times are charted per this many minutes
TOTALS = ("finished_last_hour", "failed_last_hour", "jobs_waiting", "jobs_running", "workers_alive", "workers_busy")


@never_cache
@json_methods(["GET", "HEAD"])
def healthz(request: HttpRequest) -> HttpResponse:
    """Report Redis reachability, waiting jobs per queue and live workers; 503 when Redis is down."""
    try:
        with redis_outage_as_unavailable():
            queues = {name: get_queue(name).count for name in settings.TASK_QUEUES}
            workers = len(live_workers())
    except QueueUnavailable as exc:
        # The reason names internal addresses: it goes to the log, not to whoever asked.
        logger.warning("health check failed: Redis unreachable: %s", exc)
        details = {"redis": "unreachable", "queues": None, "workers": None}
        return json_error("Redis cannot be reached.", 503, data=details, headers={"Retry-After": "5"})
    return json_success({"redis": "ok", "queues": queues, "workers": workers})


def live_workers(hostname: str | None = None) -> list[Worker]:
    """The workers whose key RQ's heartbeats keep alive, on `hostname` if given; QueueUnavailable if Redis is down."""
    with redis_outage_as_unavailable(), separate_client() as client:
        workers = Worker.all(connection=client, serializer=JSONSerializer)
    return [worker for worker in workers if hostname is None or worker.hostname == hostname]


@dataclass(frozen=True)
class Minute:
    minute: datetime
    finished: int
    failed: int


@dataclass(frozen=True)
class QueueDepth:
    name: str
    index: int  # django-rq's index, for links to its pages
    queued: int
    started: int
    scheduled: int
    deferred: int
    failed: int
    canceled: int
    workers: int


@dataclass(frozen=True)
class Percentiles:
    """Nearest-rank percentiles, in seconds, of the jobs counted; None without any."""

    count: int
    p50: float | None
    p95: float | None


@dataclass(frozen=True)
class LatencyBucket:
    start: datetime
    wait: Percentiles  # jobs that started in the bucket: enqueued -> started
    run: Percentiles  # jobs that ended in the bucket: started -> ended


@dataclass(frozen=True)
class DepthPoint:
    at: datetime
    waiting: int


@dataclass(frozen=True)
class QueueHistory:
    """A queue's last WINDOW_MINUTES, from the job history: wait and run times, and its depth over time."""

    name: str
    wait: Percentiles
    run: Percentiles
    buckets: list[LatencyBucket]
    depth: list[DepthPoint]


@dataclass(frozen=True)
class WorkerState:
    name: str
    key: str  # RQ's key, for the link to django-rq's page of the worker
    queue_index: int | None  # django-rq's index of its first queue, which that page is under
    state: str  # busy, idle, suspended… as RQ says; "not responding" when its heartbeats stopped
    alive: bool
    queues: str
    current_job_id: str
    seconds_since_heartbeat: float | None
    successful_jobs: int
    failed_jobs: int
    hostname: str
    pid: int | None


@dataclass(frozen=True)
class Health:
    generated_at: datetime
    minutes: list[Minute]
    queue_history: list[QueueHistory]
    queues: list[QueueDepth] = field(default_factory=list)
    workers: list[WorkerState] = field(default_factory=list)
    redis_error: str = ""

    @property
    def finished_last_hour(self) -> int:
        return sum(minute.finished for minute in self.minutes)

    @property
    def failed_last_hour(self) -> int:
        return sum(minute.failed for minute in self.minutes)

    @property
    def workers_alive(self) -> int:
        return sum(worker.alive for worker in self.workers)

    @property
    def workers_busy(self) -> int:
        return sum(worker.alive and worker.state == "busy" for worker in self.workers)

    @property
    def jobs_waiting(self) -> int:
        return sum(queue.queued for queue in self.queues)

    @property
    def jobs_running(self) -> int:
        return sum(queue.started for queue in self.queues)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "totals": {name: getattr(self, name) for name in TOTALS}}


def current_health() -> Health:
    """Gather everything the page shows; Redis being down still leaves the history's part."""
    moment = timezone.now()
    try:
        with redis_outage_as_unavailable():
            history.record_new_jobs()  # jobs enqueued a moment ago count as waiting
            queues, workers, error = queue_depths(), worker_states(), ""
    except QueueUnavailable as exc:
        logger.warning("health page: Redis unavailable: %s", exc)
        queues, workers, error = [], [], f"Redis cannot be reached: {exc}"
    return Health(moment, throughput(moment), queue_history(moment), queues, workers, error)


def throughput(moment: datetime) -> list[Minute]:
    """Jobs finished and failed in each of the last WINDOW_MINUTES minutes (the current one last)."""
    first = window_start(moment)
    counts = (
        JobRecord.objects.filter(ended_at__gte=first, status__in=["finished", "failed"])
        .annotate(minute=TruncMinute("ended_at"))
        .values("minute", "status")
        .annotate(count=Count("id"))
    )
    by_minute: dict[tuple[datetime, str], int] = {(row["minute"], row["status"]): row["count"] for row in counts}
    slots = [first + timedelta(minutes=offset) for offset in range(WINDOW_MINUTES)]
    return [Minute(slot, by_minute.get((slot, "finished"), 0), by_minute.get((slot, "failed"), 0)) for slot in slots]


def window_start(moment: datetime) -> datetime:
    """The first minute of the window: the current minute is its last."""
    return moment.replace(second=0, microsecond=0) - timedelta(minutes=WINDOW_MINUTES - 1)


def queue_history(moment: datetime) -> list[QueueHistory]:
    """Each queue's wait and run times and depth over the window, from the rows that touch it.

    A job waits from enqueued_at until started_at, or until it ended without starting (canceled);
    a row keeps only its last attempt, so earlier attempts of a retried job are not counted.
    """
    first = window_start(moment)
    names = sorted(settings.RQ_QUEUES)
    waits, runs = defaultdict(list), defaultdict(list)  # queue -> [(moment, seconds)]
    spans = defaultdict(list)  # queue -> [(enqueued_at, end of the wait, or None while it waits)]
    # Three indexed reads, each of the window's rows only: started, ended, and still waiting. Unordered,
    # and not filtered by queue: either would draw the planner to an index spanning the whole history.
    rows = JobRecord.objects.order_by()
    started = rows.filter(started_at__gte=first, enqueued_at__isnull=False)
    for queue, enqueued_at, started_at in started.values_list("queue", "enqueued_at", "started_at"):
        waits[queue].append((started_at, (started_at - enqueued_at).total_seconds()))
        spans[queue].append((enqueued_at, started_at))
    ended = rows.filter(ended_at__gte=first)
    for queue, enqueued_at, started_at, ended_at, ran in ended.values_list(
        "queue", "enqueued_at", "started_at", "ended_at", "duration"
    ):
        if ran is not None:
            runs[queue].append((ended_at, ran.total_seconds()))
        if started_at is None and enqueued_at is not None:
            spans[queue].append((enqueued_at, ended_at))
    waiting = rows.filter(status=JobRecord.Status.QUEUED, enqueued_at__isnull=False)
    for queue, enqueued_at in waiting.values_list("queue", "enqueued_at"):
        spans[queue].append((enqueued_at, None))

    bucket_starts = [first + timedelta(minutes=m) for m in range(0, WINDOW_MINUTES, BUCKET_MINUTES)]
    samples = [min(first + timedelta(minutes=m + 1), moment) for m in range(WINDOW_MINUTES)]
    return [
        QueueHistory(
            name=name,
            wait=percentiles(seconds for _, seconds in waits[name]),
            run=percentiles(seconds for _, seconds in runs[name]),
            buckets=[
                LatencyBucket(
                    start,
                    percentiles(in_bucket(waits[name], start)),
                    percentiles(in_bucket(runs[name], start)),
                )
                for start in bucket_starts
            ],
            depth=depth_series(spans[name], samples),
        )
        for name in names
    ]


def in_bucket(timed: list[tuple[datetime, float]], start: datetime) -> list[float]:
    end = start + timedelta(minutes=BUCKET_MINUTES)
    return [seconds for at, seconds in timed if start <= at < end]


def percentiles(values: Iterable[float]) -> Percentiles:
    """p50 and p95 by nearest rank: each is a time some job really took."""
    ordered = sorted(max(0.0, value) for value in values)  # clocks of two hosts may disagree a little
    if not ordered:
        return Percentiles(0, None, None)

    def rank(fraction: float) -> float:
        return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]

    return Percentiles(len(ordered), rank(0.5), rank(0.95))


def depth_series(spans: list[tuple[datetime, datetime | None]], samples: list[datetime]) -> list[DepthPoint]:
    """How many jobs were waiting at each sample: enqueued by then and not yet started or ended."""
    entered = sorted(enqueued for enqueued, _ in spans)
    left = sorted(max(end, enqueued) for enqueued, end in spans if end is not None)
    return [DepthPoint(at, bisect_right(entered, at) - bisect_right(left, at)) for at in samples]


def queue_depths() -> list[QueueDepth]:
    depths = []
    for name, index in sorted(get_queues_map().items(), key=lambda item: item[1]):
        queue = get_queue(name)
        # cleanup=False: counting must not make RQ fail expired jobs behind the history's back.
        depths.append(
            QueueDepth(
                name=name,
                index=index,
                queued=queue.count,
                started=queue.started_job_registry.get_job_count(cleanup=False),
                scheduled=queue.scheduled_job_registry.get_job_count(cleanup=False),
                deferred=queue.deferred_job_registry.get_job_count(cleanup=False),
                failed=queue.failed_job_registry.get_job_count(cleanup=False),
                canceled=CanceledJobRegistry(queue=queue).get_job_count(cleanup=False),
                workers=Worker.count(queue=queue),
            )
        )
    return depths


def worker_states() -> list[WorkerState]:
    """Every registered worker; one silent for longer than TASK_ABANDONED_AFTER_SECONDS is not responding."""
    moment = now()
    states = []
    queue_indexes = get_queues_map()
    with separate_client() as client:
        for worker in Worker.all(connection=client, serializer=JSONSerializer):
            heartbeat = worker.last_heartbeat
            silent_for = (moment - heartbeat).total_seconds() if heartbeat else None
            alive = silent_for is not None and silent_for <= settings.TASK_ABANDONED_AFTER_SECONDS
            queue_names = worker.queue_names()
            states.append(
                WorkerState(
                    name=worker.name,
                    key=worker.key,
                    queue_index=queue_indexes.get(queue_names[0]) if queue_names else None,
                    state=worker.get_state() if alive else "not responding",
                    alive=alive,
                    queues=", ".join(queue_names),
                    current_job_id=worker.get_current_job_id() or "",
                    seconds_since_heartbeat=silent_for,
                    successful_jobs=worker.successful_job_count,
                    failed_jobs=worker.failed_job_count,
                    hostname=worker.hostname or "",
                    pid=worker.pid,
                )
            )
    return sorted(states, key=lambda state: (not state.alive, state.name))
