"""Job history: one row per RQ job, kept after Redis forgets the job."""

from django.conf import settings
from django.db import models


class JobRecord(models.Model):
    """What happened to one job: written on enqueue, updated at every status change (history.py)."""

    class Status(models.TextChoices):
        # RQ's status names, plus `deleted` for a job removed from Redis before it ended.
        QUEUED = "queued"
        SCHEDULED = "scheduled"
        DEFERRED = "deferred"
        STARTED = "started"
        FINISHED = "finished"
        FAILED = "failed"
        STOPPED = "stopped"
        CANCELED = "canceled"
        DELETED = "deleted"

    class TaskType(models.IntegerChoices):
        # The sleep tasks' types (POST /tasks type=0..3); thumbnails and emails have none.
        INSTANT = 0, "instant sleep"
        SHORT = 1, "short sleep"
        MEDIUM = 2, "medium sleep"
        LONG = 3, "long sleep"
        __empty__ = "thumbnails or email"

    job_id = models.CharField("job id", max_length=64, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices)
    queue = models.CharField(max_length=64)
    kind = models.CharField(max_length=64, blank=True, help_text="The task policy it runs under (TASK_POLICIES).")
    task_type = models.PositiveSmallIntegerField("type", choices=TaskType, null=True, blank=True)
    function = models.CharField("task", max_length=255, blank=True, db_index=True)
    description = models.CharField(max_length=255, blank=True)
    # Lower-cased, so that search finds it by an exact, indexed match.
    email = models.EmailField("email to", blank=True, db_index=True, help_text="The address the job sends to.")

    created_at = models.DateTimeField("submitted", db_index=True)
    enqueued_at = models.DateTimeField("enqueued", null=True, blank=True)
    started_at = models.DateTimeField("started", null=True, blank=True)
    ended_at = models.DateTimeField("ended", null=True, blank=True, db_index=True)
    duration = models.DurationField(null=True, blank=True)

    attempt = models.PositiveSmallIntegerField(default=1)
    max_attempts = models.PositiveSmallIntegerField("of attempts", default=1)
    result = models.TextField(blank=True, help_text="The return value, as JSON, shortened.")
    error = models.TextField(blank=True, help_text="Why it failed or stopped, or why its last attempt failed.")
    traceback = models.TextField(blank=True)
    worker_name = models.CharField("worker", max_length=255, blank=True)

    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name="user account",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    submitter_username = models.CharField("submitted by", max_length=150, blank=True, db_index=True)
    submitter_ip = models.GenericIPAddressField("from IP", null=True, blank=True, db_index=True)

    # Orders status events so that a late one never overwrites a newer one (see history.event_order).
    event_order = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "job"
        verbose_name_plural = "jobs"
        ordering = ("-created_at", "-id")
        indexes = (
            models.Index(fields=("status", "ended_at"), name="jobrecord_status_ended"),
            models.Index(fields=("started_at",), name="jobrecord_started"),  # the health page's wait times
            # One for each filter of the history list, which shows the newest rows first.
            models.Index(fields=("status", "created_at"), name="jobrecord_status_created"),
            models.Index(fields=("queue", "created_at"), name="jobrecord_queue_created"),
            models.Index(fields=("task_type", "created_at"), name="jobrecord_type_created"),
            models.Index(fields=("kind", "created_at"), name="jobrecord_kind_created"),
        )
        # Viewing is Django's view permission; every action that changes a job has its own.
        default_permissions = ("view",)
        permissions = (
            ("requeue_job", "Can requeue failed, stopped or canceled jobs"),
            ("cancel_job", "Can cancel waiting jobs"),
            ("stop_job", "Can stop running jobs"),
            ("delete_job", "Can delete jobs"),
            ("empty_queue", "Can empty a queue"),
            ("run_job", "Can run scheduled jobs now"),
        )

    def __str__(self) -> str:
        return self.job_id

    @property
    def submitter(self) -> str:
        """Who submitted the job: the user, or 'anonymous' with the address."""
        who = self.submitter_username or "anonymous"
        return f"{who} ({self.submitter_ip})" if self.submitter_ip else who


class JobAttempt(models.Model):
    """One run of a job, from its start to its end: the timeline on a job's page (history.py writes it)."""

    # Keyed by the job id, so that an event writes its attempt without first reading the job's row.
    record = models.ForeignKey(
        JobRecord, to_field="job_id", db_column="job_id", on_delete=models.CASCADE, related_name="attempts"
    )
    number = models.PositiveSmallIntegerField("attempt")
    # A run is told apart by when it was enqueued: a requeued job runs again under the same number.
    enqueued_at = models.DateTimeField("enqueued")
    worker_name = models.CharField("worker", max_length=255, blank=True)
    started_at = models.DateTimeField("started", null=True, blank=True)
    ended_at = models.DateTimeField("ended", null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=JobRecord.Status.choices)
    error = models.TextField(blank=True)
    retry_at = models.DateTimeField("retry at", null=True, blank=True, help_text="When its retry was due.")
    event_order = models.BigIntegerField(default=0)

    class Meta:
        verbose_name = "attempt"
        ordering = ("enqueued_at",)
        default_permissions = ()
        constraints = (models.UniqueConstraint(fields=("record", "enqueued_at"), name="jobattempt_run"),)

    def __str__(self) -> str:
        return f"attempt {self.number}"  # the caption of its row in the job's timeline
