from django.apps import AppConfig


class TasksAppConfig(AppConfig):
    name = "tasks_app"
    verbose_name = "Tasks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from tasks_app import events, signals, thumbnails

        signals.job_status_changed.connect(events.publish_status_change, dispatch_uid="tasks_app.events")
        signals.job_status_changed.connect(
            thumbnails.discard_files_of_unfinished_job, dispatch_uid="tasks_app.thumbnails"
        )
