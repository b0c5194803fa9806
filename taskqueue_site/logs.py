"""The JSON log formatter (one object a line, for log collectors) and what error reports may show."""

import logging
import re
from typing import Any

from django.views.debug import SafeExceptionReporterFilter
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter
from rq import get_current_job

# Our messages say job_id=<id>; RQ's own messages name the job by its id, a uuid4.
JOB_ID_IN_MESSAGE = re.compile(
    r"\bjob_id=(?P<named>[A-Za-z0-9_-]{1,64})"
    r"|\b(?P<uuid>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b"
)
# RQ colours parts of its messages when stdout is a terminal.
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
UVICORN_ACCESS_FIELDS = ("client", "method", "path", "http_version", "status_code")


class JSONFormatter(JsonFormatter):
    """Format a record as {"time", "level", "logger", "message", "pid", "job_id", extra fields...}."""

    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s %(process)s",
            timestamp="time",
            rename_fields={
                "levelname": "level",
                "name": "logger",
                "process": "pid",
                "exc_info": "exception",
                "stack_info": "stack",
            },
            # uvicorn's copy of the message with terminal colours is not a field worth keeping.
            reserved_attrs=[*RESERVED_ATTRS, "color_message"],
        )

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        message = log_data["message"] = ANSI_ESCAPE.sub("", str(log_data["message"]))
        match = JOB_ID_IN_MESSAGE.search(message)
        job = get_current_job()  # the job this process runs, inside a worker
        job_id = log_data.get("job_id") or (match and (match["named"] or match["uuid"])) or (job and job.id)
        if job_id:
            log_data["job_id"] = job_id
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            log_data.update(zip(UVICORN_ACCESS_FIELDS, record.args, strict=True))


class SecretHidingFilter(SafeExceptionReporterFilter):
    """Hide settings, variables and values that hold a password, such as REDIS_URL's, from error reports."""

    hidden_settings = re.compile("API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|URL|SENTINEL|QUEUES", re.I)
    CREDENTIALS_IN_URL = re.compile(r"://[^/@\s]*:[^/@\s]*@")

    def get_traceback_frame_variables(self, request, tb_frame):
        variables = super().get_traceback_frame_variables(request, tb_frame)
        return [(name, self.cleansed_substitute if self.is_secret(name, value) else value) for name, value in variables]

    def is_secret(self, name: str, value: Any) -> bool:
        try:
            return bool(self.hidden_settings.search(name) or self.CREDENTIALS_IN_URL.search(repr(value)))
        except Exception:  # a value without a working repr() shows nothing either
            return True
