"""How the site logs: settings.LOGGING_CONFIG and the JSON formatter that settings.LOGGING names.

JSONFormatter writes each record as one JSON object on one line (tracebacks included, their
newlines escaped), so a log collector parses every event without guessing where it ends.
"""

import json
import logging
import logging.config
import re
from datetime import UTC, datetime
from typing import Any

from rq import get_current_job

# Every LogRecord has these; anything else on a record came from `extra=` and is kept as a field.
STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", logging.INFO, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",  # Python 3.12+
    "color_message",  # uvicorn's copy of the message with terminal colours
}
# Our messages say job_id=<id>; RQ's own messages name the job by its id, a uuid4.
JOB_ID_IN_MESSAGE = re.compile(
    r"\bjob_id=(?P<named>[A-Za-z0-9_-]{1,64})"
    r"|\b(?P<uuid>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b"
)
# RQ colours parts of its messages when stdout is a terminal.
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def configure_logging(config: dict[str, Any]) -> None:
    """Apply settings.LOGGING, and log Python warnings as events instead of printing them raw."""
    logging.config.dictConfig(config)
    logging.captureWarnings(True)


class JSONFormatter(logging.Formatter):
    """Format a record as {"time", "level", "logger", "message", "job_id", ...} on one line."""

    def format(self, record: logging.LogRecord) -> str:
        message = ANSI_ESCAPE.sub("", record.getMessage())
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
            "pid": record.process,
        }
        job_id = getattr(record, "job_id", None) or job_id_in(message) or running_job_id()
        if job_id:
            entry["job_id"] = job_id
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, path, http_version, status = record.args
            entry.update(client=client, method=method, path=path, http_version=http_version, status_code=status)
        for key, value in vars(record).items():
            if key not in STANDARD_ATTRIBUTES and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def job_id_in(message: str) -> str | None:
    """Return the job id a message names (job_id=<id>, or RQ's uuid4 ids), if any."""
    match = JOB_ID_IN_MESSAGE.search(message)
    if match is None:
        return None
    return match.group("named") or match.group("uuid")


def running_job_id() -> str | None:
    """Return the id of the job this process is running (inside a worker's job), if any."""
    job = get_current_job()
    return job.id if job is not None else None
