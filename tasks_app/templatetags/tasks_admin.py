"""Template helpers for the admin pages: readable durations, live refresh, canceled job counts."""

from datetime import timedelta

import django_rq
from django import template
from django.templatetags.static import static
from django.utils.html import format_html
from redis.exceptions import RedisError
from rq.registry import CanceledJobRegistry

from tasks_app import connections
from tasks_app.permissions import READ_ONLY_PAGES

register = template.Library()

# Our admin pages that refresh themselves (admin-live.js); so do django-rq's read-only pages.
LIVE_PAGES = frozenset({"tasks_app_jobrecord_changelist", "tasks_app_jobrecord_change", "tasks_app_jobrecord_health"})


# Above a minute: the largest unit that fits, and the next smaller one.
DURATION_UNITS = (("d", 86400, "h", 3600), ("h", 3600, "min", 60), ("min", 60, "s", 1))


@register.filter
def duration(value: timedelta | float | None) -> str:
    """Format a duration for people: '850 ms', '1.2 s', '42 s', '3 min 4 s', '2 h 5 min', '3 d 4 h'."""
    if value is None or value == "":
        return ""
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    seconds = max(0.0, seconds)
    if seconds < 0.9995:
        return f"{round(seconds * 1000)} ms"
    if seconds < 9.95:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    unit, size, smaller, smaller_size = next(unit for unit in DURATION_UNITS if whole >= unit[1])
    big, rest = divmod(whole, size)
    small = rest // smaller_size
    return f"{big} {unit} {small} {smaller}" if small else f"{big} {unit}"


@register.simple_tag(takes_context=True)
def live_refresh(context: template.Context) -> str:
    """On the pages that refresh themselves (never forms that confirm), load the module that does it."""
    request = context.get("request")
    match = getattr(request, "resolver_match", None)
    name = match.url_name if match else None
    if name not in LIVE_PAGES and (name or "").removeprefix("django_rq_") not in READ_ONLY_PAGES:
        return ""
    if request.method != "GET":  # an action's confirmation, answering a POST at the list's address
        return ""
    return format_html('<script type="module" src="{}"></script>', static("tasks_app/admin-live.js"))


@register.simple_tag
def canceled_count(queue_name: str) -> int | str:
    """How many canceled jobs a queue keeps (django-rq's pages do not count them)."""
    try:
        queue = django_rq.get_queue(queue_name, connection=connections.get_connection(queue_name))
        return CanceledJobRegistry(queue=queue).get_job_count(cleanup=False)
    except RedisError:
        return "?"
