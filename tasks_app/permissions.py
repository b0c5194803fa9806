"""Who may look at the queues and who may change them: permission names and the two groups.

Viewing needs staff and the view permissions; every change to a job or a queue needs its own (admin.py).
"""

from django.contrib.auth.models import Group, Permission
from django.db.models import Q

REQUEUE = "tasks_app.requeue_job"
CANCEL = "tasks_app.cancel_job"
STOP = "tasks_app.stop_job"
DELETE = "tasks_app.delete_job"
EMPTY_QUEUE = "tasks_app.empty_queue"
RUN = "tasks_app.run_job"  # its own: running early changes when work happens, not whether it happens again

DASHBOARD = "django_rq.admin"  # django-rq's own permission: every page of its dashboard

VIEWER_PERMISSIONS = ("tasks_app.view_jobrecord", DASHBOARD)
OPERATOR_PERMISSIONS = (*VIEWER_PERMISSIONS, REQUEUE, CANCEL, STOP, DELETE, EMPTY_QUEUE, RUN)

# django-rq's pages that only read, by URL name (without its "django_rq_" prefix), ours included:
# a viewer may open them. Any other page of django-rq needs an operator's permissions (admin.py).
READ_ONLY_PAGES = frozenset(
    {
        "home",
        "jobs",
        "queue_details",
        "finished_jobs",
        "failed_jobs",
        "scheduled_jobs",
        "started_jobs",
        "deferred_jobs",
        "canceled_jobs",
        "job_detail",
        "result_detail",
        "workers",
        "worker_details",
        "scheduler_jobs",
        "cron_scheduler_detail",
        "cron_job_detail",
    }
)

VIEWERS_GROUP = "Queue viewers"
OPERATORS_GROUP = "Queue operators"
GROUPS = {VIEWERS_GROUP: VIEWER_PERMISSIONS, OPERATORS_GROUP: OPERATOR_PERMISSIONS}


def create_queue_groups() -> list[str]:
    """Create both groups, or add what they lack; return the permissions that do not exist yet."""
    missing = []
    for name, wanted in GROUPS.items():
        found = permissions_named(wanted)
        missing += [perm for perm in wanted if perm not in found]
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*found.values())
    return sorted(set(missing))


def permissions_named(names: tuple[str, ...]) -> dict[str, Permission]:
    """Look permissions up by their 'app_label.codename' names."""
    query = Q()
    for name in names:
        app_label, codename = name.split(".")
        query |= Q(content_type__app_label=app_label, codename=codename)
    found = Permission.objects.filter(query).select_related("content_type")
    return {f"{perm.content_type.app_label}.{perm.codename}": perm for perm in found}


def create_queue_groups_after_migrate(sender, **kwargs) -> None:
    """post_migrate receiver: the groups exist as soon as the database does."""
    create_queue_groups()
