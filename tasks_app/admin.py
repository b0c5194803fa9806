"""The admin: job history with safe actions, the health page, and django-rq's dashboard behind
permissions (permissions.py): looking needs staff, every change to a job or a queue its own permission."""

import contextlib
import ipaddress
import json
import logging
import re
import sys
from collections.abc import Callable
from datetime import datetime
from functools import wraps

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import DateFieldListFilter, helpers
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import unquote
from django.db import connections as databases
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.defaultfilters import pluralize
from django.template.response import TemplateResponse
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
from tasks_app.models import JobAttempt, JobRecord
from tasks_app.templatetags.tasks_admin import duration

logger = logging.getLogger(__name__)

# Each action of the history list: its button on a job's own page, the permission it needs,
# and the statuses it applies to.
ACTIONS = {
    "requeue_jobs": ("Requeue", permissions.REQUEUE, status.REQUEUABLE_STATUSES),
    "cancel_jobs": ("Cancel", permissions.CANCEL, status.WAITING_STATUSES),
    "stop_jobs": ("Stop", permissions.STOP, {"started"}),
    "delete_jobs": ("Delete", permissions.DELETE, set(JobRecord.Status.values) - {"started"}),
    "run_now_jobs": ("Run now", permissions.RUN, {"scheduled"}),
    "retry_failed_jobs": ("Retry all failed", permissions.REQUEUE, set()),  # the list's own button
}
# The actions that interrupt or destroy work ask first, on a page saying what will happen.
CONFIRMED_ACTIONS = {
    "cancel_jobs": ("canceled", "they will not run."),
    "stop_jobs": ("stopped", "their workers end the running work, which will not finish."),
    "delete_jobs": ("deleted", "from Redis and from the history. This cannot be undone."),
}
# Per-row messages after an action; beyond this many, the rest are summed up in one line.
MAX_ROW_MESSAGES = 20
MAX_ACTION_ROWS = 1000  # rows one action may change in one request
# Failed jobs "Retry all failed" takes at once: each is read from Redis and its row updated.
MAX_RETRY_ALL = 10_000


def exact_time_field(field_name: str, label: str) -> Callable[[admin.ModelAdmin, JobRecord], str]:
    """A read-only field showing a time to the millisecond (the admin's own shows minutes)."""

    @admin.display(description=label, ordering=field_name)
    def show(model_admin: admin.ModelAdmin, obj: JobRecord) -> str:
        return exact_time(getattr(obj, field_name))

    return show


def may(permission: str | None) -> Callable[..., bool]:
    """A has_<action>_permission method, as @admin.action(permissions=[...]) looks them up; None: nobody."""
    return lambda model_admin, request, obj=None: permission is not None and request.user.has_perm(permission)


class JobAttemptInline(admin.TabularInline):
    """The job's timeline: one row per run, shown to whoever may view the history."""

    model = JobAttempt
    verbose_name_plural = "timeline: every attempt"
    fields = ("number", "worker_name", "enqueued", "started", "ended", "outcome", "error", "retry")
    readonly_fields = fields
    extra = 0
    can_delete = False
    has_add_permission = has_change_permission = has_delete_permission = may(None)
    has_view_permission = may("tasks_app.view_jobrecord")

    enqueued = exact_time_field("enqueued_at", "enqueued")
    started = exact_time_field("started_at", "started")
    ended = exact_time_field("ended_at", "ended")
    retry = exact_time_field("retry_at", "retry due")


def task_name(function: str) -> str:
    """A task's name for people: 'tasks_app.tasks.make_thumbnails' -> 'make thumbnails'."""
    return function.rsplit(".", 1)[-1].replace("_", " ")


def readable_result(result: str) -> str:
    """A finished job's stored JSON result, as people read it: a thumbnail, an address, "done"."""
    try:
        value = json.loads(result)
    except ValueError:  # shortened when stored, or not JSON at all
        return format_html('<span title="{}">{}</span>', result, Truncator(result).chars(60))
    thumbnails = value.get("thumbnails") if isinstance(value, dict) else None
    if thumbnails and all(isinstance(thumbnail, dict) for thumbnail in thumbnails):
        by_size = sorted(thumbnails, key=lambda thumbnail: thumbnail.get("size", 0))
        return format_html(
            '<a href="{}"><img class="job-thumbnail" src="{}" alt="thumbnail, {} by {} pixels"></a>',
            by_size[-1].get("url", ""),
            by_size[0].get("url", ""),
            by_size[0].get("width", "?"),
            by_size[0].get("height", "?"),
        )
    if isinstance(value, dict) and value.get("email"):
        return format_html("sent to {}", value["email"])
    if value is True or value is None:
        return "done"
    return format_html('<span title="{}">{}</span>', result, Truncator(result).chars(60))


class StaticChoicesFilter(admin.SimpleListFilter):
    """Filter on a field by choices that settings or code define (parameter_name: `<field>__exact`)."""

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() is None:
            return queryset
        if self.value() not in {str(value) for value, _ in self.lookup_choices}:
            raise IncorrectLookupParameters(f"{self.title}: no such choice")  # the admin's "?e=1" page
        return queryset.filter(**{self.parameter_name: self.value()})


class QueueFilter(StaticChoicesFilter):
    title, parameter_name = "queue", "queue__exact"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(name, name) for name in get_queues_map()]


class TypeFilter(StaticChoicesFilter):
    title, parameter_name = "type", "task_type__exact"
    NONE = "none"  # the tasks without a type

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[object, str]]:
        return [*JobRecord.TaskType.choices[1:], (self.NONE, JobRecord.TaskType.__empty__)]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(task_type=None) if self.value() == self.NONE else super().queryset(request, queryset)


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
    # What an operator scans for fits 1280 px; worker and submitter are on each job's page.
    list_display = ("job", "status_display", "task", "submitted", "duration_display", "outcome")
    # Each filter's choices are known without a query: a DISTINCT over the whole history would be
    # slow at millions of rows (for the same reason there is no date_hierarchy).
    list_filter = ("status", QueueFilter, TypeFilter, TaskFilter, ("created_at", DateFieldListFilter))
    # What each word matches is search_condition's; a search field only makes the admin show the box.
    search_fields = ("job_id",)
    search_help_text = (
        "A job id or a part of it, an email address it sent to, a word of its error or task, "
        "a user name, anonymous, or an IP address."
    )
    ordering = ("-created_at", "-id")
    list_per_page = 50
    show_full_result_count = False
    actions = ("requeue_jobs", "cancel_jobs", "stop_jobs", "delete_jobs", "run_now_jobs", "retry_failed_jobs")
    inlines = (JobAttemptInline,)
    fieldsets = (
        ("Job", {"fields": ("job_id", "status_display", "now", "queue", "task", "kind", "description", "attempts")}),
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
    has_run_permission = may(permissions.RUN)

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
        attempt = format_html('<span class="job-attempt">attempt {}/{}</span>', obj.attempt, obj.max_attempts)
        status = format_html('<span class="job-status job-status-{}">{}</span>', obj.status, obj.status)
        return status + attempt if obj.max_attempts > 1 else status

    @admin.display(description="task", ordering="function")
    def task(self, obj: JobRecord) -> str:
        label = obj.get_task_type_display() if obj.task_type is not None else task_name(obj.function)
        return format_html(
            '<span title="{}">{}</span> <span class="job-queue">{}</span>', obj.function, label, obj.queue
        )

    @admin.display(description="when", ordering="created_at")
    def submitted(self, obj: JobRecord) -> str:
        local = timezone.localtime(obj.created_at)
        return format_html('{} <span class="job-time">{}</span>', f"{local:%Y-%m-%d}", f"{local:%H:%M:%S}")

    submitted_at = exact_time_field("created_at", "submitted")
    enqueued = exact_time_field("enqueued_at", "enqueued")
    started = exact_time_field("started_at", "started")
    ended = exact_time_field("ended_at", "ended")

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
            return readable_result(obj.result)
        if obj.status == JobRecord.Status.DELETED:
            return "removed from Redis before it ended"
        if not obj.error:
            return ""
        ended = obj.status in history.ENDED_STATUSES
        prefix = "" if ended else "last attempt: "
        css = "job-error" if ended else "job-previous-error"
        return format_html(
            '<span class="{}" title="{}">{}{}</span>', css, obj.error, prefix, Truncator(obj.error).chars(200)
        )

    @admin.display(description="submitted by", ordering="submitter_username")
    def submitter_display(self, obj: JobRecord) -> str:
        return obj.submitter

    @admin.display(description="in Redis now")
    def now(self, obj: JobRecord) -> str:
        """What only Redis knows: when a scheduled run or retry is due, a running job's progress."""
        try:
            task = status.get_task_status(obj.job_id)
        except status.TaskNotFound:
            return "Gone from Redis (expired or deleted): the history below is all that is left."
        except connections.QueueUnavailable:
            return "Redis is unreachable: showing the history only."
        if task.task_status == JobRecord.Status.STARTED:
            return format_html(
                '<progress class="job-progress" max="100" value="{}"></progress> {}% done', task.progress, task.progress
            )
        if task.task_status == JobRecord.Status.SCHEDULED and task.scheduled_for:
            due = "next retry at" if task.attempt > 1 else "scheduled for"
            return f"{due} {exact_time(datetime.fromisoformat(task.scheduled_for))}"
        if task.task_status == JobRecord.Status.QUEUED and task.attempt > 1:
            return f"attempt {task.attempt} waits in its queue"
        return task.task_status

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

    @admin.action(description="Run selected scheduled jobs now", permissions=["run"])
    def run_now_jobs(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self.apply(request, queryset, jobs.run_scheduled_task, "queued to run now")

    @admin.action(
        description="Retry all failed jobs (of the filtered list, or of those selected)", permissions=["requeue"]
    )
    def retry_failed_jobs(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        """Requeue every failed job the list's filters and search match, after a page that says what will happen."""
        failed = queryset.filter(status=JobRecord.Status.FAILED)
        count = failed.count()
        if count > MAX_RETRY_ALL:
            messages.error(
                request,
                f"{count} failed jobs match; Retry all failed takes at most {MAX_RETRY_ALL} at a time. "
                "Nothing was done: narrow the list with its filters first.",
            )
            return None
        job_ids = list(failed.values_list("job_id", flat=True))
        try:
            outcome = jobs.requeue_tasks(job_ids, check_only=request.POST.get("confirm") != "yes")
        except connections.QueueUnavailable as exc:
            return admin_views.redis_unavailable(request, self.admin_site, exc)
        if request.POST.get("confirm") != "yes":
            context = {
                **self.admin_site.each_context(request),
                "title": "Retry all failed jobs?",
                "opts": self.opts,
                "matching": count,
                "outcome": outcome,
                "refused_shown": outcome.refused[:MAX_ROW_MESSAGES],
                "refused_more": max(0, len(outcome.refused) - MAX_ROW_MESSAGES),
                "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
                "select_across": request.POST.get("select_across", "0"),
            }
            return TemplateResponse(request, "admin/tasks_app/jobrecord/retry_failed.html", context)
        if outcome.requeued:
            messages.success(request, f"Requeued {len(outcome.requeued)} failed jobs.")
            for start in range(0, len(outcome.requeued), history.BATCH):
                rows = JobRecord.objects.filter(job_id__in=outcome.requeued[start : start + history.BATCH])
                LogEntry.objects.log_actions(request.user.pk, rows, CHANGE, "Requeued by Retry all failed.")
        report_refused(request, outcome)
        return None

    @admin.action(description="Delete selected jobs (from Redis and the history)", permissions=["delete_job"])
    def delete_jobs(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        def delete(task_id: str) -> str:
            with contextlib.suppress(status.TaskNotFound):  # gone from Redis already: only the row is left
                jobs.delete_task(task_id)
            rows = JobRecord.objects.filter(job_id=task_id)
            self.log_deletions(request, rows)
            rows.delete()
            return "deleted"

        response = self.apply(request, queryset, delete, "deleted", log_change=False)  # logged as a deletion
        # The question, or back to the list: the job's own page, where the button was, is gone.
        return response if isinstance(response, TemplateResponse) else None

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
        action = request.POST.get("action", "")
        if action in CONFIRMED_ACTIONS and request.POST.get("post") != "yes":
            return self.confirm(request, queryset, action)
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

    def confirm(self, request: HttpRequest, queryset: QuerySet, action: str) -> HttpResponse:
        """The page that asks before an action runs; it posts the same selection back with post=yes."""
        label, _, statuses = ACTIONS[action]
        records = list(queryset.only("pk", "job_id", "status", "function", "task_type", "queue"))
        context = {
            **self.admin_site.each_context(request),
            "title": f"{label} {len(records)} job{pluralize(len(records))}?",
            "opts": self.opts,
            "action": action,
            "label": label,
            "done": CONFIRMED_ACTIONS[action][0],
            "consequence": CONFIRMED_ACTIONS[action][1],
            "records": [(record, self.task(record), record.status in statuses) for record in records],
            "applies": sum(record.status in statuses for record in records),
            "next": safe_next(request),
        }
        return TemplateResponse(request, "admin/tasks_app/jobrecord/confirm_action.html", context)


def report_refused(request: HttpRequest, outcome: jobs.BulkRequeue) -> None:
    """A line for each job the requeue rule refused (the first few, then how many more), and for those gone."""
    for _, reason in outcome.refused[:MAX_ROW_MESSAGES]:
        messages.warning(request, reason)
    if len(outcome.refused) > MAX_ROW_MESSAGES:
        messages.warning(request, f"… and {len(outcome.refused) - MAX_ROW_MESSAGES} more jobs not requeued.")
    if missing := outcome.missing:
        which = missing[0] if len(missing) == 1 else f"{len(missing)} jobs"
        messages.warning(request, f"Nothing done to {which}: no longer exists in Redis (expired or deleted).")


def redirect_to_next(request: HttpRequest, field: str = "next") -> HttpResponse | None:
    """Back to the page the action came from (the job's own page), if it is ours; else the list."""
    target = safe_next(request, field)
    return HttpResponseRedirect(target) if target else None


def safe_next(request: HttpRequest, field: str = "next") -> str:
    """The posted page to go back to, if it is on this site; else ""."""
    target = request.POST.get(field, "")
    return target if url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()) else ""


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
                if changed and requeues(request):
                    return self.requeue_under_rule(request, changed, kwargs)
                return view(request, *args, **kwargs)
            except NoSuchJobError as exc:
                # Gone between the page and the click (expired, or deleted by someone else).
                messages.warning(request, f"Nothing done to a job that no longer exists: {exc}")
                return HttpResponseRedirect(reverse(f"{self.admin_site.name}:django_rq_home"))
            except (RedisConnectionError, RedisTimeoutError, connections.QueueUnavailable) as exc:
                return admin_views.redis_unavailable(request, self.admin_site, exc)
            finally:
                if changed:
                    try:
                        history.sync_with_redis(changed)
                    except Exception:
                        logger.exception("could not update the job history after %s", request.path)

        return checked

    def requeue_under_rule(self, request: HttpRequest, job_ids: list[str], kwargs: dict) -> HttpResponse:
        """django-rq's requeue buttons, under the history's rule: each job it refuses stays, with the reason."""
        outcome = jobs.requeue_tasks(job_ids)
        if outcome.requeued:
            messages.success(request, f"Requeued {len(outcome.requeued)} of {len(job_ids)} jobs.")
        report_refused(request, outcome)
        site, queue_index = self.admin_site.name, kwargs["queue_index"]
        if page_name(request) == "requeue_job" and not outcome.missing:
            return HttpResponseRedirect(reverse(f"{site}:django_rq_job_detail", args=[queue_index, kwargs["job_id"]]))
        return redirect_to_next(request, "next_url") or HttpResponseRedirect(
            reverse(f"{site}:django_rq_jobs", args=[queue_index])
        )


def requeues(request: HttpRequest) -> bool:
    """Whether a django-rq POST requeues jobs: its Requeue, Requeue All, or a bulk requeue."""
    name = page_name(request)
    return name in {"requeue_job", "requeue_all"} or (name == "actions" and request.POST.get("action") == "requeue")


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
