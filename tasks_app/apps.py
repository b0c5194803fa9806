from django.apps import AppConfig
from django.conf import settings
from django.db.models.signals import post_migrate
from django.utils.module_loading import import_string


class TasksAppConfig(AppConfig):
    name = "tasks_app"
    verbose_name = "Tasks"

    def ready(self) -> None:
        from tasks_app import events, history, permissions, signals, thumbnails

        # Every status change updates the job's history row and its event streams, in whichever process made it.
        signals.job_status_changed.connect(history.record_status_change, dispatch_uid="tasks_app.history")
        signals.job_status_changed.connect(events.publish_status_change, dispatch_uid="tasks_app.events")
        signals.job_status_changed.connect(
            thumbnails.discard_files_of_unfinished_job, dispatch_uid="tasks_app.thumbnails"
        )
        post_migrate.connect(permissions.create_queue_groups_after_migrate, sender=self)
        # Settings name the Sentinel connection class by its path (they import no app code);
        # django-rq hands CONNECTION_KWARGS to redis-py as they are, and redis-py needs the class.
        for config in settings.RQ_QUEUES.values():
            kwargs = config.get("CONNECTION_KWARGS", {})
            if isinstance(kwargs.get("connection_class"), str):
                kwargs["connection_class"] = import_string(kwargs["connection_class"])
