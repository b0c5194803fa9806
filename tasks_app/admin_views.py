"""Admin pages beyond the model list: queue health, a queue's canceled jobs, refusals, and django-rq's
JSON stats and Prometheus metrics behind a token or a viewer's session (admin.py checks staff first)."""

from collections.abc import Callable
from secrets import compare_digest

import prometheus_client
from django.conf import settings
from django.contrib import admin
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django_rq.contrib.prometheus import RQCollector
from django_rq.queues import get_queue_by_index
from django_rq.utils import get_statistics
from rq.job import Job
from rq.queue import Queue
from rq.registry import CanceledJobRegistry, StartedJobRegistry
from rq.timeouts import TimerDeathPenalty
from rq.worker import Worker

from tasks_app import health
from tasks_app.connections import get_queue
from tasks_app.permissions import (
    DASHBOARD,
    OPERATORS_GROUP,
    VIEWER_PERMISSIONS,
    VIEWERS_GROUP,
    permissions_named,
)
from tasks_app.responses import json_error, json_success
from tasks_app.templatetags.tasks_admin import duration

QUEUE_SERIES = ("queued", "started", "scheduled", "deferred")
PERCENTILES = ("p95", "p50")  # drawn in this order, so that p50's bar stands in front of p95's
JOBS_PER_PAGE = 100


@never_cache
def health_page(request: HttpRequest) -> HttpResponse:
    """Charts, and the numbers behind them: throughput, queue depth, workers."""
    snapshot = health.current_health()
    minutes = [
        (f"{timezone.localtime(minute.minute):%H:%M}", [("finished", minute.finished), ("failed", minute.failed)])
        for minute in snapshot.minutes
    ]
    queues = [(queue.name, [(series, getattr(queue, series)) for series in QUEUE_SERIES]) for queue in snapshot.queues]
    idle = snapshot.workers_alive - snapshot.workers_busy
    silent = len(snapshot.workers) - snapshot.workers_alive
    workers = [("workers", [("busy", snapshot.workers_busy), ("idle", idle), ("silent", silent)])]
    context = {
        **admin.site.each_context(request),
        "title": "Queue health",
        "health": snapshot,
        "active_minutes": [minute for minute in reversed(snapshot.minutes) if minute.finished or minute.failed],
        "throughput_chart": bar_chart(minutes),
        "queue_chart": bar_chart(queues),
        "queue_series": QUEUE_SERIES,
        "workers_chart": bar_chart(workers),
        "queue_history": [queue_history_charts(queue) for queue in snapshot.queue_history],
        "window_start": snapshot.minutes[0].minute,
        "workers_idle": idle,
        "workers_silent": silent,
        "window_minutes": health.WINDOW_MINUTES,
        "bucket_minutes": health.BUCKET_MINUTES,
        "abandoned_after": settings.TASK_ABANDONED_AFTER_SECONDS,
    }
    return render(request, "admin/tasks_app/jobrecord/health.html", context)


def bar_chart(groups: list[tuple[str, list[tuple[str, int]]]]) -> dict:
    """A stacked bar chart for chart.html: bars are drawn in proportion to the largest stack."""
    return {"groups": groups, "max": max((sum(value for _, value in bars) for _, bars in groups), default=0)}


def queue_history_charts(queue: health.QueueHistory) -> dict:
    """A queue's three small charts: jobs waiting at each minute, then wait and run time per bucket."""

    def at(moment) -> str:
        return f"{timezone.localtime(moment):%H:%M}"

    def latency(kind: str) -> list[tuple[str, list[tuple[str, float, str]]]]:
        columns = []
        for bucket in queue.buckets:
            found = getattr(bucket, kind)
            values = [(series, getattr(found, series)) for series in PERCENTILES]
            label = f"{at(bucket.start)}, {found.count} jobs"
            columns.append((label, [(name, value, f"{name} {duration(value)}") for name, value in values if value]))
        return columns

    depth = [(at(point.at), [("waiting", point.waiting, f"{point.waiting} waiting")]) for point in queue.depth]
    return {
        "name": queue.name,
        "charts": [
            column_chart(f"{queue.name}: jobs waiting", depth, str, "No job waited"),
            column_chart(f"{queue.name}: wait time, p50 and p95", latency("wait"), duration, "No job started"),
            column_chart(f"{queue.name}: run time, p50 and p95", latency("run"), duration, "No job ended"),
        ],
    }


def column_chart(
    label: str, columns: list[tuple[str, list[tuple[str, float, str]]]], show: Callable[[float], str], empty: str
) -> dict:
    """An SVG column chart for columns.html: each column's bars stand in front of one another, from the
    bottom, in proportion to the chart's largest value; `show` formats that value for the axis."""
    top = max((value for _, bars in columns for _, value, _ in bars), default=0)
    rects = [
        {
            "series": series,
            "x": index * 10 + 1,
            "y": round(100 - value / top * 100, 2),
            "height": round(value / top * 100, 2),
            "title": f"{name}: {text}",
        }
        for index, (name, bars) in enumerate(columns)
        for series, value, text in bars
        if value > 0
    ]
    return {"label": label, "width": len(columns) * 10, "rects": rects, "top": show(top) if top else "", "empty": empty}


@never_cache
def health_json(request: HttpRequest) -> HttpResponse:
    """The health page's numbers, for scripts."""
    return json_success(health.current_health().as_dict())


@never_cache
def canceled_jobs(request: HttpRequest, queue_index: int) -> HttpResponse:
    """A queue's canceled jobs, in django-rq's own list (django-rq 4.2 has no page for them)."""
    queue = queue_or_404(queue_index)
    registry = CanceledJobRegistry(queue=queue)
    paginator = Paginator(range(registry.get_job_count(cleanup=False)), JOBS_PER_PAGE)  # counts, reads nothing
    page = paginator.get_page(request.GET.get("page"))
    offset = (page.number - 1) * JOBS_PER_PAGE
    job_ids = registry.get_job_ids(offset, offset + JOBS_PER_PAGE - 1, desc=True, cleanup=False)
    jobs = Job.fetch_many(job_ids, connection=queue.connection, serializer=queue.serializer)
    context = {
        **admin.site.each_context(request),
        "queue": queue,
        "queue_index": queue_index,
        "jobs": [job for job in jobs if job is not None],  # None: expired since the ids were read
        "num_jobs": paginator.count,
        "page": page.number,
        "page_range": list(paginator.get_elided_page_range(page.number)),
        "job_status": "Canceled",
    }
    return render(request, "django_rq/jobs.html", context)


@never_cache
def worker_details(request: HttpRequest, queue_index: int, key: str) -> HttpResponse:
    """django-rq's worker page, reading the running job as JSON (django-rq reads it as pickle, and fails)."""
    queue = queue_or_404(queue_index)
    try:
        worker = Worker.find_by_key(key, connection=queue.connection, serializer=queue.serializer)
    except ValueError:  # not a worker's key at all
        worker = None
    if worker is None:
        raise Http404(f"No worker {key}")
    context = {
        **admin.site.each_context(request),
        **{"queue": queue, "queue_index": queue_index, "worker": worker, "job": worker.get_current_job()},
        **{"queue_names": ", ".join(worker.queue_names()), "total_working_time": worker.total_working_time},
    }
    return render(request, "django_rq/worker_details.html", context)


def no_scheduler(request: HttpRequest, scheduler_index: int) -> HttpResponse:
    """django-rq's rq-scheduler page: RQ's own scheduler runs here, its jobs are on each queue's page."""
    raise Http404("rq-scheduler is not installed: see each queue's scheduled jobs")


def clean_started_registries() -> None:
    """Fail or retry the jobs of dead workers here, before a django-rq page's cleanup does it in this
    thread with SIGALRM, which fails outside the main thread (rq/rq#2135; drop once RQ fixes it)."""
    for name in settings.RQ_QUEUES:
        queue = get_queue(name)
        StartedJobRegistry(queue=queue, job_class=queue.job_class, death_penalty_class=TimerDeathPenalty).cleanup()


def queue_or_404(queue_index: int) -> Queue:
    try:
        return get_queue_by_index(queue_index)
    except IndexError:
        raise Http404(f"No queue number {queue_index}") from None


def refuse(request: HttpRequest, site: admin.AdminSite, permission: str) -> HttpResponse:
    """Explain, with a 403, which permission an action needs."""
    found = permissions_named((permission,)).get(permission)
    context = {
        **site.each_context(request),
        "title": "Not allowed",
        "permission": permission,
        "permission_name": found.name if found else permission,
    }
    if permission in VIEWER_PERMISSIONS:
        context.update(group=VIEWERS_GROUP, role="viewer")
    else:
        context.update(group=OPERATORS_GROUP, role="operator")
    return render(request, "admin/tasks_app/refused.html", context, status=403)


def redis_unavailable(request: HttpRequest, site: admin.AdminSite, error: Exception) -> HttpResponse:
    """Say, with a 503, that a page needs Redis and Redis cannot be reached."""
    context = {**site.each_context(request), "title": "Redis is unreachable", "error": error}
    response = render(request, "admin/tasks_app/unavailable.html", context, status=503)
    response["Retry-After"] = "5"
    return response


# --- django-rq's JSON stats and Prometheus metrics, for monitoring scripts ---------------------------

HOW_TO_AUTHENTICATE = "Send 'Authorization: Bearer <RQ_API_TOKEN>' (or open it in a session of a queue viewer)."


def api_access(request: HttpRequest) -> bool:
    """RQ_API_TOKEN as a Bearer token (the scheme in any case), or a queue viewer's session."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    expected = settings.RQ_API_TOKEN
    if expected and scheme.lower() == "bearer" and compare_digest(token.strip().encode(), expected.encode()):
        return True
    return request.user.is_active and request.user.is_staff and request.user.has_perm(DASHBOARD)


def refused_without_token() -> HttpResponse:
    return json_error(HOW_TO_AUTHENTICATE, 401, headers={"WWW-Authenticate": 'Bearer realm="django-rq"'})


def stats_json(request: HttpRequest) -> HttpResponse:
    """django-rq's queue statistics, for a token or a viewer (django-rq lets any staff account in)."""
    # django-rq's own view would check the header again, with the scheme's case.
    if not api_access(request):
        return refused_without_token()
    clean_started_registries()
    return JsonResponse(get_statistics())


def token_in_url_refused(request: HttpRequest, token: str) -> HttpResponse:
    """django-rq accepts stats.json/<token>; this site does not (URLs end up in logs)."""
    return json_error(f"Tokens in the URL are not accepted. {HOW_TO_AUTHENTICATE}", 401)


@never_cache
def prometheus_metrics(request: HttpRequest) -> HttpResponse:
    """django-rq's metrics on a registry of this request's own (django-rq's view narrows its one
    registry for good when a scrape asks for ?name[]=...)."""
    if not api_access(request):
        return refused_without_token()
    clean_started_registries()
    registry = prometheus_client.CollectorRegistry(auto_describe=True)
    registry.register(RQCollector())
    if "name[]" in request.GET:
        registry = registry.restricted_registry(request.GET.getlist("name[]"))
    encoder, content_type = prometheus_client.exposition.choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(registry), content_type=content_type)
