"""What the queue health page shows: throughput from the job history, queues and workers from Redis."""

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import django_rq
from django.conf import settings
from django.db.models import Count
from django.db.models.functions import TruncMinute
from django.utils import timezone
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq.registry import CanceledJobRegistry
from rq.serializers import JSONSerializer
from rq.utils import now
from rq.worker import Worker

from tasks_app import abandoned, services
from tasks_app.models import JobRecord

logger = logging.getLogger(__name__)

WINDOW_MINUTES = 60


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
        data = asdict(self)
        data["totals"] = {
            "finished_last_hour": self.finished_last_hour,
            "failed_last_hour": self.failed_last_hour,
            "jobs_waiting": self.jobs_waiting,
            "jobs_running": self.jobs_running,
            "workers_alive": self.workers_alive,
            "workers_busy": self.workers_busy,
        }
        return data


def current_health() -> Health:
    """Gather everything the page shows; Redis being down still leaves the history's part."""
    moment = timezone.now()
    minutes = throughput(moment)
    try:
        connection = services.get_connection()
        return Health(moment, minutes, queue_depths(connection), worker_states(connection))
    except (RedisConnectionError, RedisTimeoutError) as exc:
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


def queue_depths(connection) -> list[QueueDepth]:
    """How many jobs wait, run, are scheduled, deferred, failed and canceled in each queue."""
    depths = []
    for index, name in enumerate(sorted(settings.RQ_QUEUES)):  # django-rq numbers queues by sorted name
        queue = django_rq.get_queue(name, connection=connection)
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


def worker_states(connection) -> list[WorkerState]:
    """Every registered worker, and whether it is really alive (abandoned.worker_health)."""
    moment = now()
    states = []
    for worker in Worker.all(connection=connection, serializer=JSONSerializer):
        health = abandoned.worker_health(connection, worker.name, moment)
        heartbeat = worker.last_heartbeat
        states.append(
            WorkerState(
                name=worker.name,
                state=worker.get_state() if health.alive else "not responding",
                alive=health.alive,
                queues=", ".join(worker.queue_names()),
                current_job_id=worker.get_current_job_id() or "",
                seconds_since_heartbeat=(moment - heartbeat).total_seconds() if heartbeat else None,
                successful_jobs=worker.successful_job_count,
                failed_jobs=worker.failed_job_count,
                hostname=worker.hostname or "",
                pid=worker.pid,
            )
        )
    return sorted(states, key=lambda state: (not state.alive, state.name))
