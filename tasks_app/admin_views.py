"""Admin pages beyond the model list: queue health (page and JSON), a queue's canceled jobs, refusals.

admin.py routes to these through the admin site, which has already checked that the user is
active staff; each view here checks what else it needs.
"""

from django.conf import settings
from django.contrib import admin
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django_rq.queues import get_queue_by_index
from django_rq.utils import DEFAULT_ITEMS_PER_PAGE, get_jobs, paginate
from django_rq.views import each_context
from rq.registry import CanceledJobRegistry

from tasks_app import charts, health
from tasks_app.permissions import OPERATORS_GROUP, VIEWER_PERMISSIONS, VIEWERS_GROUP, permissions_named
from tasks_app.responses import json_success

QUEUE_SERIES = ("queued", "started", "scheduled", "deferred")
THROUGHPUT_LABEL_EVERY = 10  # minutes between time labels


@never_cache
def health_page(request: HttpRequest, site: admin.AdminSite) -> HttpResponse:
    """Charts, and the numbers behind them: throughput, queue depth, workers."""
    snapshot = health.current_health()
    throughput_chart = charts.stacked_columns(
        [
            (
                timezone.localtime(minute.minute).strftime("%H:%M"),
                [("finished", minute.finished), ("failed", minute.failed)],
            )
            for minute in snapshot.minutes
        ],
        label_every=THROUGHPUT_LABEL_EVERY,
    )
    queue_chart = charts.stacked_rows(
        [(queue.name, [(series, getattr(queue, series)) for series in QUEUE_SERIES]) for queue in snapshot.queues]
    )
    idle = snapshot.workers_alive - snapshot.workers_busy
    silent = len(snapshot.workers) - snapshot.workers_alive
    workers_chart = charts.stacked_rows(
        [("workers", [("busy", snapshot.workers_busy), ("idle", idle), ("silent", silent)])]
    )
    context = {
        **site.each_context(request),
        "title": "Queue health",
        "health": snapshot,
        "active_minutes": [minute for minute in reversed(snapshot.minutes) if minute.finished or minute.failed],
        "throughput_chart": throughput_chart,
        "queue_chart": queue_chart,
        "queue_series": QUEUE_SERIES,
        "workers_chart": workers_chart,
        "workers_idle": idle,
        "workers_silent": silent,
        "window_minutes": health.WINDOW_MINUTES,
        "abandoned_after": settings.TASK_ABANDONED_AFTER_SECONDS,
    }
    return render(request, "admin/tasks_app/jobrecord/health.html", context)


@never_cache
def health_json(request: HttpRequest) -> HttpResponse:
    """The health page's numbers, for scripts."""
    return json_success(health.current_health().as_dict())


@never_cache
def canceled_jobs(request: HttpRequest, queue_index: int) -> HttpResponse:
    """A queue's canceled jobs, in django-rq's own list (django-rq 4.2 has no page for them)."""
    try:
        queue = get_queue_by_index(queue_index)
    except IndexError:
        raise Http404(f"No queue number {queue_index}") from None
    registry = CanceledJobRegistry(queue=queue)
    num_jobs = registry.get_job_count(cleanup=False)
    page, page_range, offset = paginate(request, num_jobs)
    job_ids = registry.get_job_ids(offset, offset + DEFAULT_ITEMS_PER_PAGE - 1, desc=True, cleanup=False)
    context = {
        **each_context(request),
        "queue": queue,
        "queue_index": queue_index,
        "jobs": get_jobs(queue, job_ids, registry) if job_ids else [],
        "num_jobs": num_jobs,
        "page": page,
        "page_range": page_range,
        "job_status": "Canceled",
    }
    return render(request, "django_rq/jobs.html", context)


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
