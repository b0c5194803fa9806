"""Health: GET /healthz for load balancers (served by HealthCheckMiddleware), and the admin's health page."""

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count
from django.db.models.functions import TruncMinute
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from rq.registry import CanceledJobRegistry
from rq.serializers import JSONSerializer
from rq.utils import now
from rq.worker import Worker

from tasks_app.connections import QueueUnavailable, get_queue, redis_outage_as_unavailable, separate_client
from tasks_app.models import JobRecord
from tasks_app.responses import json_error, json_methods, json_success

logger = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"
WINDOW_MINUTES = 60
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
class WorkerState:
    name: str
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
    minutes = throughput(moment)
    try:
        with redis_outage_as_unavailable():
            return Health(moment, minutes, queue_depths(), worker_states())
    except QueueUnavailable as exc:
        logger.warning("health page: Redis unavailable: %s", exc)
        return Health(moment, minutes, redis_error=f"Redis cannot be reached: {exc}")


def throughput(moment: datetime) -> list[Minute]:
    """Jobs finished and failed in each of the last WINDOW_MINUTES minutes (the current one last)."""
    current = moment.replace(second=0, microsecond=0)
    first = current - timedelta(minutes=WINDOW_MINUTES - 1)
    counts = (
        JobRecord.objects.filter(ended_at__gte=first, status__in=["finished", "failed"])
        .annotate(minute=TruncMinute("ended_at"))
        .values("minute", "status")
        .annotate(count=Count("id"))
    )
    by_minute: dict[tuple[datetime, str], int] = {(row["minute"], row["status"]): row["count"] for row in counts}
    slots = [first + timedelta(minutes=offset) for offset in range(WINDOW_MINUTES)]
    return [Minute(slot, by_minute.get((slot, "finished"), 0), by_minute.get((slot, "failed"), 0)) for slot in slots]


def queue_depths() -> list[QueueDepth]:
    depths = []
    for index, name in enumerate(sorted(settings.RQ_QUEUES)):  # django-rq numbers queues by sorted name
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
    with separate_client() as client:
        for worker in Worker.all(connection=client, serializer=JSONSerializer):
            heartbeat = worker.last_heartbeat
            silent_for = (moment - heartbeat).total_seconds() if heartbeat else None
            alive = silent_for is not None and silent_for <= settings.TASK_ABANDONED_AFTER_SECONDS
            states.append(
                WorkerState(
                    name=worker.name,
                    state=worker.get_state() if alive else "not responding",
                    alive=alive,
                    queues=", ".join(worker.queue_names()),
                    current_job_id=worker.get_current_job_id() or "",
                    seconds_since_heartbeat=silent_for,
                    successful_jobs=worker.successful_job_count,
                    failed_jobs=worker.failed_job_count,
                    hostname=worker.hostname or "",
                    pid=worker.pid,
                )
            )
    return sorted(states, key=lambda state: (not state.alive, state.name))
