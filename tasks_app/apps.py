from django.apps import AppConfig
from django.db.models.signals import post_migrate


class TasksAppConfig(AppConfig):
    name = "tasks_app"
    verbose_name = "Tasks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from tasks_app import events, history, permissions, signals, thumbnails

        # Every status change updates the job's history row and its event streams, in whichever process made it.
        signals.job_status_changed.connect(history.record_status_change, dispatch_uid="tasks_app.history")
        signals.job_status_changed.connect(events.publish_status_change, dispatch_uid="tasks_app.events")
        signals.job_status_changed.connect(
            thumbnails.discard_files_of_unfinished_job, dispatch_uid="tasks_app.thumbnails"
        )
        post_migrate.connect(permissions.create_queue_groups_after_migrate, sender=self)
