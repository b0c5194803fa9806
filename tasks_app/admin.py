"""The admin: job history with safe actions, the health page, and django-rq's dashboard behind
permissions (permissions.py): looking needs staff, every change to a job or a queue its own permission."""

import contextlib
import ipaddress
import logging
import re
import sys
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import DateFieldListFilter
from django.contrib.admin.utils import unquote
from django.db import connections as databases
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, re_path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.text import Truncator
from django_rq import models as rq_models
from django_rq import stats_views
from django_rq.admin import QueueAdmin
from django_rq.queues import get_queue_by_index
from django_rq.settings import get_queues_map
from django_rq.urls import get_admin_urlpatterns
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq.exceptions import NoSuchJobError
from rq.registry import FailedJobRegistry

from tasks_app import admin_views, connections, history, jobs, permissions, status
from tasks_app.models import JobRecord
from tasks_app.templatetags.tasks_admin import duration

logger = logging.getLogger(__name__)

# Each action of the history list: its button on a job's own page, the permission it needs,
# and the statuses it applies to.
ACTIONS = {
    "requeue_jobs": ("Requeue", permissions.REQUEUE, status.REQUEUABLE_STATUSES),
    "cancel_jobs": ("Cancel", permissions.CANCEL, status.WAITING_STATUSES),
    "stop_jobs": ("Stop", permissions.STOP, {"started"}),
    "delete_jobs": ("Delete", permissions.DELETE, set(JobRecord.Status.values) - {"started"}),
}
# Per-row messages after an action; beyond this many, the rest are summed up in one line.
MAX_ROW_MESSAGES = 20
MAX_ACTION_ROWS = 1000  # rows one action may change in one request


def exact_time_field(field_name: str, label: str) -> Callable[[admin.ModelAdmin, JobRecord], str]:
    """A read-only field showing a time to the millisecond (the admin's own shows minutes)."""

    @admin.display(description=label, ordering=field_name)
    def show(model_admin: admin.ModelAdmin, obj: JobRecord) -> str:
        return exact_time(getattr(obj, field_name))

    return show


def may(permission: str | None) -> Callable[..., bool]:
    """A has_<action>_permission method, as @admin.action(permissions=[...]) looks them up; None: nobody."""
    return lambda model_admin, request, obj=None: permission is not None and request.user.has_perm(permission)


class StaticChoicesFilter(admin.SimpleListFilter):
    """Filter on a field by choices that settings or code define (parameter_name: `<field>__exact`)."""

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset if self.value() is None else queryset.filter(**{self.parameter_name: self.value()})


class QueueFilter(StaticChoicesFilter):
    title, parameter_name = "queue", "queue__exact"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(name, name) for name in get_queues_map()]


class TypeFilter(StaticChoicesFilter):
    title, parameter_name = "type", "task_type__exact"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[int, str]]:
        return [(task_type, str(task_type)) for task_type in jobs.TASK_TYPES]


class TaskFilter(StaticChoicesFilter):
    title, parameter_name = "task", "kind__exact"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(kind, kind.replace("_", " ")) for kind in settings.TASK_POLICIES]


# Long enough that a part of another id is rarely a whole id's beginning by chance.
ID_START = re.compile(r"[0-9a-f-]{8,64}")


def search_condition(queryset: QuerySet, term: str) -> Q:
    """What one search word matches. An IP or email address, or "anonymous", is one indexed match; a
    word shaped like an id's beginning matches those ids if there are any; anything else is looked
    for inside ids, errors, descriptions, task names and user names (a scan of the history)."""
    with contextlib.suppress(ValueError):
        return Q(submitter_ip=str(ipaddress.ip_address(term)))
    if "@" in term:
        return Q(email=term.lower())
    if term.lower() == "anonymous":
        return Q(submitter_username="")
    id_start = id_starts_with(queryset, term.lower())
    if ID_START.fullmatch(term.lower()) and queryset.filter(id_start).exists():
        return id_start
    return (
        Q(submitter_username__icontains=term)
        | Q(job_id__contains=term.lower())
        | Q(error__icontains=term)
        | Q(description__icontains=term)
        | Q(function__icontains=term)
    )


def id_starts_with(queryset: QuerySet, start: str) -> Q:
    """Ids beginning with `start`, found through the index of job_id."""
    if databases[queryset.db].vendor == "sqlite":
        # SQLite's LIKE ignores case, so no index of job_id serves it; a range in byte order does.
        return Q(job_id__gte=start, job_id__lt=start + chr(sys.maxunicode))
    return Q(job_id__startswith=start)  # PostgreSQL: the varchar_pattern_ops index Django adds


@admin.register(JobRecord)
class JobRecordAdmin(admin.ModelAdmin):
    list_display = (
        "job",
        "status_display",
        "queue",
        "task",
        "submitted",
        "duration_display",
        "outcome",
        "worker_short",
        "submitter_display",
    )
    # Each filter's choices are known without a query: a DISTINCT over the whole history would be
    # slow at millions of rows (for the same reason there is no date_hierarchy).
    list_filter = ("status", QueueFilter, TypeFilter, TaskFilter, ("created_at", DateFieldListFilter))
    # What each word matches is search_condition's; these only make the admin show the search box.
    search_fields = ("job_id", "submitter_username", "email", "error", "description", "function")
    search_help_text = (
        "A job id or a part of it, an email address it sent to, a word of its error or task, "
        "a user name, anonymous, or an IP address."
    )
    ordering = ("-created_at", "-id")
    list_per_page = 50
    show_full_result_count = False
    actions = ("requeue_jobs", "cancel_jobs", "stop_jobs", "delete_jobs")
    fieldsets = (
        ("Job", {"fields": ("job_id", "status_display", "queue", "task", "kind", "description", "attempts")}),
        ("Times", {"fields": ("submitted_at", "enqueued", "started", "ended", "duration_display")}),
        ("Outcome", {"fields": ("result", "error", "traceback_display")}),
        ("Who and where", {"fields": ("submitter_display", "submitted_by", "worker_name", "links")}),
    )
    readonly_fields = tuple(name for _, options in fieldsets for name in options["fields"])

    # --- Who may do what -----------------------------------------------------------------------

    # Rows are written by the status signal, never by hand; the "Delete jobs" action removes the job
    # from Redis too, and reports each row (Django's "Delete selected" goes with the permission).
    has_add_permission = has_change_permission = has_delete_permission = may(None)
    has_requeue_permission = may(permissions.REQUEUE)
    has_cancel_permission = may(permissions.CANCEL)
    has_stop_permission = may(permissions.STOP)
    has_delete_job_permission = may(permissions.DELETE)

    def changelist_view(self, request: HttpRequest, extra_context=None):
        # Django answers an action the user may not run with "No action selected"; say why instead.
        action = request.POST.get("action", "") if request.method == "POST" else ""
        if action in ACTIONS and action not in self.get_actions(request):
            return admin_views.refuse(request, self.admin_site, ACTIONS[action][1])
        record_new_jobs(request)  # list jobs enqueued a moment ago too
        return super().changelist_view(request, {"title": "Job history", **(extra_context or {})})

    # --- Pages ----------------------------------------------------------------------------------

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path("health/", self.viewer_page(admin_views.health_page), name="{}_{}_health".format(*info)),
            path("health.json", self.viewer_page(admin_views.health_json), name="{}_{}_health_json".format(*info)),
            *super().get_urls(),
        ]

    def viewer_page(self, view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        """An admin page for whoever may view the history (the admin site checks staff first)."""

        @wraps(view)
        def checked(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if not self.has_view_permission(request):
                return admin_views.refuse(request, self.admin_site, "tasks_app.view_jobrecord")
            return view(request, *args, **kwargs)

        return self.admin_site.admin_view(checked)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        record = self.get_object(request, unquote(object_id))
        available = self.get_actions(request)
        buttons = [
            (name, label)
            for name, (label, _, statuses) in ACTIONS.items()
            if record and name in available and record.status in statuses
        ]
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), "job_actions": buttons})

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):
        """Rows matching every word; words shaped like an id, address or IP use an index, not a scan."""
        for term in search_term.split():
            queryset = queryset.filter(search_condition(queryset, term))
        return queryset, False

    # --- Columns and fields ---------------------------------------------------------------------

    @admin.display(description="job", ordering="job_id")
    def job(self, obj: JobRecord) -> str:
        return format_html('<span class="job-id" title="{}">{}</span>', obj.job_id, obj.job_id[:8])

    @admin.display(description="status", ordering="status")
    def status_display(self, obj: JobRecord) -> str:
        attempt = f" · attempt {obj.attempt}/{obj.max_attempts}" if obj.max_attempts > 1 else ""
        return format_html('<span class="job-status job-status-{}">{}</span>{}', obj.status, obj.status, attempt)

    @admin.display(description="task", ordering="function")
    def task(self, obj: JobRecord) -> str:
        short = obj.function.rsplit(".", 1)[-1]
        label = f"{obj.kind} · type {obj.task_type}" if obj.kind and obj.task_type is not None else short
        return format_html('<span title="{}">{}</span>', obj.function, label)

    @admin.display(description="submitted", ordering="created_at")
    def submitted(self, obj: JobRecord) -> str:
        return timezone.localtime(obj.created_at).strftime("%Y-%m-%d %H:%M:%S")

    submitted_at = exact_time_field("created_at", "submitted")
    enqueued = exact_time_field("enqueued_at", "enqueued")
    started = exact_time_field("started_at", "started")
    ended = exact_time_field("ended_at", "ended")

    @admin.display(description="worker", ordering="worker_name")
    def worker_short(self, obj: JobRecord) -> str:
        return format_html('<span title="{}">{}</span>', obj.worker_name, obj.worker_name[:8])

    @admin.display(description="duration", ordering="duration")
    def duration_display(self, obj: JobRecord) -> str:
        if obj.duration is not None:
            return duration(obj.duration)
        if obj.status == JobRecord.Status.STARTED and obj.started_at:
            return f"running {duration(timezone.now() - obj.started_at)}"
        return ""

    @admin.display(description="result or error")
    def outcome(self, obj: JobRecord) -> str:
        if obj.status == JobRecord.Status.FINISHED:
            return format_html('<span title="{}">{}</span>', obj.result, Truncator(obj.result).chars(60))
        if obj.status == JobRecord.Status.DELETED:
            return "removed from Redis before it ended"
        if not obj.error:
            return ""
        ended = obj.status in history.ENDED_STATUSES
        prefix = "" if ended else "last attempt: "
        css = "job-error" if ended else "job-previous-error"
        return format_html(
            '<span class="{}" title="{}">{}{}</span>', css, obj.error, prefix, Truncator(obj.error).chars(60)
        )

    @admin.display(description="submitted by", ordering="submitter_username")
    def submitter_display(self, obj: JobRecord) -> str:
        return obj.submitter

    @admin.display(description="attempt")
    def attempts(self, obj: JobRecord) -> str:
        return f"{obj.attempt} of {obj.max_attempts}"

    @admin.display(description="traceback")
    def traceback_display(self, obj: JobRecord) -> str:
        return format_html('<pre class="job-traceback">{}</pre>', obj.traceback) if obj.traceback else "—"

    @admin.display(description="elsewhere")
    def links(self, obj: JobRecord) -> str:
        status_url = reverse("tasks_app:task_status", args=[obj.job_id])
        queue_index = get_queues_map().get(obj.queue)
        if queue_index is None:
            return format_html('<a href="{}">status API</a>', status_url)
        rq_url = reverse("admin:django_rq_job_detail", args=[queue_index, obj.job_id])
        return format_html(
            '<a href="{}">status API</a> · <a href="{}">in django-rq&rsquo;s dashboard</a> (while Redis keeps the job)',
            status_url,
            rq_url,
        )

    # --- Actions --------------------------------------------------------------------------------

    @admin.action(description="Requeue selected failed, stopped or canceled jobs", permissions=["requeue"])
    def requeue_jobs(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self.apply(request, queryset, jobs.requeue_task, "requeued")

    @admin.action(description="Cancel selected waiting jobs", permissions=["cancel"])
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self.apply(request, queryset, jobs.cancel_waiting_task, "canceled")

    @admin.action(description="Stop selected running jobs", permissions=["stop"])
    def stop_jobs(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self.apply(request, queryset, jobs.stop_running_task, "asked to stop")

    @admin.action(description="Delete selected jobs (from Redis and the history)", permissions=["delete_job"])
    def delete_jobs(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        def delete(task_id: str) -> str:
            with contextlib.suppress(status.TaskNotFound):  # gone from Redis already: only the row is left
                jobs.delete_task(task_id)
            rows = JobRecord.objects.filter(job_id=task_id)
            self.log_deletions(request, rows)
            rows.delete()
            return "deleted"

        self.apply(request, queryset, delete, "deleted", log_change=False)  # logged as a deletion
        return None  # back to the list: the job's own page, where the button was, is gone

    def apply(
        self,
        request: HttpRequest,
        queryset: QuerySet,
        operation: Callable[[str], str],
        done: str,
        log_change: bool = True,
    ) -> HttpResponse | None:
        """Run a service on each selected job, say row by row what happened, and log it on the job's History."""
        selected = queryset.count()
        if selected > MAX_ACTION_ROWS:
            # Each row is a round trip to Redis and a log entry: "select all" on a long history
            # would hold a web thread for minutes. Narrow the list with its filters first.
            messages.error(
                request,
                f"{selected} jobs are selected; an action takes at most {MAX_ACTION_ROWS} at a time. "
                "Nothing was done: narrow the list with its filters, then select again.",
            )
            return None
        rows: list[tuple[int, str]] = []
        for record in queryset.only("pk", "job_id"):
            try:
                operation(record.job_id)
                rows.append((messages.SUCCESS, f"{record.job_id}: {done}."))
            except status.TaskNotFound:
                rows.append(
                    (messages.WARNING, f"{record.job_id}: no longer in Redis (expired or deleted); nothing to do.")
                )
            except jobs.TaskStateConflict as exc:
                rows.append((messages.WARNING, f"{record.job_id}: {exc}"))
            except connections.QueueUnavailable:
                error = "Redis cannot be reached; this and the remaining jobs were left alone."
                rows.append((messages.ERROR, f"{record.job_id}: {error}"))
                break
            if log_change and rows[-1][0] == messages.SUCCESS:
                self.log_change(request, record, f"{done.capitalize()} from the admin.")
        # One message per row, capped so that a large selection does not bury the page.
        for level, text in rows[:MAX_ROW_MESSAGES]:
            messages.add_message(request, level, text)
        if hidden := rows[MAX_ROW_MESSAGES:]:
            succeeded = sum(level == messages.SUCCESS for level, _ in hidden)
            messages.info(request, f"… and {len(hidden)} more jobs ({succeeded} done, {len(hidden) - succeeded} not).")
        return redirect_to_next(request)


def redirect_to_next(request: HttpRequest) -> HttpResponse | None:
    """Back to the page the action came from (the job's own page), if it is ours; else the list."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return HttpResponseRedirect(target)
    return None


def exact_time(moment) -> str:
    """A time to the millisecond, in the site's time zone, with the zone's name."""
    if moment is None:
        return "—"
    local = timezone.localtime(moment)
    return f"{local:%Y-%m-%d %H:%M:%S}.{local.microsecond // 1000:03d} {local:%Z}"


# --- django-rq's dashboard, with a permission on every action --------------------------------------


def failed_jobs(request: HttpRequest, kwargs: dict) -> list[str]:
    return FailedJobRegistry(queue=get_queue_by_index(kwargs["queue_index"])).get_job_ids(cleanup=False)


def the_job(request: HttpRequest, kwargs: dict) -> list[str]:
    return [kwargs["job_id"]]


BULK_ACTIONS = {"delete": permissions.DELETE, "requeue": permissions.REQUEUE, "stop": permissions.STOP}
BULK_PAGES = {"confirm_action", "actions"}  # they post the action's name; it says what they need

# django-rq's pages that change jobs or queues on POST, by URL name (without its "django_rq_" prefix):
# the permission they need (their GET, the confirmation, too) and the jobs they change.
GUARDED_PAGES: dict[str, tuple[str | None, Callable[[HttpRequest, dict], list[str]]]] = {
    "delete_job": (permissions.DELETE, the_job),
    "requeue_job": (permissions.REQUEUE, the_job),
    "enqueue_job": (permissions.REQUEUE, the_job),
    "stop_job": (permissions.STOP, the_job),
    "clear": (permissions.EMPTY_QUEUE, lambda request, kwargs: get_queue_by_index(kwargs["queue_index"]).get_job_ids()),
    "requeue_all": (permissions.REQUEUE, failed_jobs),
    "delete_failed_jobs": (permissions.DELETE, failed_jobs),
    "confirm_action": (None, lambda request, kwargs: []),
    "actions": (None, lambda request, kwargs: request.POST.getlist("job_ids")),
}


def page_name(request: HttpRequest) -> str:
    match = request.resolver_match
    return match.url_name.removeprefix("django_rq_") if match and match.url_name else ""


def permissions_needed(request: HttpRequest) -> tuple[str, ...]:
    """What a django-rq page needs beyond the dashboard permission."""
    name = page_name(request)
    if name in permissions.READ_ONLY_PAGES:
        return ()
    if name in BULK_PAGES and request.POST.get("action") in BULK_ACTIONS:
        return (BULK_ACTIONS[request.POST["action"]],)
    if name in GUARDED_PAGES and name not in BULK_PAGES:
        return (GUARDED_PAGES[name][0],)
    # Fails closed: a page neither list knows (one a later django-rq adds) is for operators only.
    return permissions.OPERATOR_PERMISSIONS


class GuardedDashboardAdmin(QueueAdmin):
    """django-rq's dashboard for staff with `django_rq.admin` only (django-rq lets any staff account read
    job arguments and tracebacks), each view that changes something checked for its own permission."""

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.has_perm(permissions.DASHBOARD)

    has_change_permission = has_view_permission

    has_module_permission = has_view_permission

    def get_urls(self):
        def wrap(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
            admin_view = self.admin_site.admin_view(self.guarded(view))

            @wraps(view)
            def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
                request.current_app = self.admin_site.name  # django-rq builds its links from this
                return admin_view(request, *args, **kwargs)

            return wrapper

        return [
            re_path(r"^stats.json/?$", admin_views.stats_json, name="django_rq_home_json"),
            re_path(r"^stats.json/(?P<token>[^/]+)/?$", admin_views.token_in_url_refused),
            re_path(r"^metrics/?$", admin_views.prometheus_metrics, name="django_rq_metrics"),
            # Before django-rq's own patterns, where "canceled" would be taken for a job id.
            path("queues/<int:queue_index>/canceled/", wrap(admin_views.canceled_jobs), name="django_rq_canceled_jobs"),
            # django-rq's own views of these answer 500: a JSON job read as pickle, rq-scheduler absent.
            path(
                "workers/<int:queue_index>/<str:key>/",
                wrap(admin_views.worker_details),
                name="django_rq_worker_details",
            ),
            path("schedulers/<int:scheduler_index>/", wrap(admin_views.no_scheduler), name="django_rq_scheduler_jobs"),
            *get_admin_urlpatterns(name_prefix="django_rq_", view_wrapper=wrap),
            # The admin index links here; django-rq's "home" above answers it. The model has no
            # table, so the admin's change, history and delete pages of a "dashboard" are left out.
            path("", wrap(stats_views.stats), name="django_rq_dashboard_changelist"),
        ]

    def guarded(self, view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def checked(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            for needed in (permissions.DASHBOARD, *permissions_needed(request)):
                if not request.user.has_perm(needed):
                    return admin_views.refuse(request, self.admin_site, needed)
            changed = jobs_changed_by(request, kwargs)
            if changed:
                # Jobs enqueued a moment ago get their rows first, so that the change reaches them.
                record_new_jobs(request)
            try:
                admin_views.clean_started_registries()
                return view(request, *args, **kwargs)
            except NoSuchJobError as exc:
                # Gone between the page and the click (expired, or deleted by someone else).
                messages.warning(request, f"Nothing done to a job that no longer exists: {exc}")
                return HttpResponseRedirect(reverse(f"{self.admin_site.name}:django_rq_home"))
            except (RedisConnectionError, RedisTimeoutError) as exc:
                return admin_views.redis_unavailable(request, self.admin_site, exc)
            finally:
                if changed:
                    try:
                        history.sync_with_redis(changed)
                    except Exception:
                        logger.exception("could not update the job history after %s", request.path)

        return checked


def record_new_jobs(request: HttpRequest) -> None:
    """Write the history rows of jobs enqueued since then (a starting job writes them too)."""
    try:
        history.record_new_jobs()
    except connections.QueueUnavailable:
        messages.warning(request, "Redis is unreachable: jobs enqueued in the last few seconds may be missing.")
    except Exception:
        logger.exception("could not record new jobs in the history")


def jobs_changed_by(request: HttpRequest, kwargs: dict) -> list[str]:
    """The jobs a POST is about to change, read before it runs (an emptied queue lists nothing after)."""
    guarded = GUARDED_PAGES.get(page_name(request))
    if request.method != "POST" or guarded is None:
        return []
    try:
        return guarded[1](request, kwargs)
    except (RedisError, IndexError):
        return []  # django-rq's view reports the problem itself


if admin.site.is_registered(rq_models.Dashboard):
    admin.site.unregister(rq_models.Dashboard)
admin.site.register(rq_models.Dashboard, GuardedDashboardAdmin)
