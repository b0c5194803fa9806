"""The OpenAPI 3.1 description of the JSON API, served at /openapi.json.

Kept true by tests/test_fuzz_api.py, which checks every generated answer against it.
"""

from typing import Any

from django.conf import settings

from tasks_app.jobs import MAX_DELAY_SECONDS, TASK_TYPES

ERROR = {
    "type": "object",
    "required": ["status", "message"],
    "properties": {
        "status": {"const": "error"},
        "message": {"type": "string", "minLength": 1},
        "errors": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
    },
}

TIME = {"type": ["string", "null"], "format": "date-time"}

TASK_STATUS_PROPERTIES = {
    "task_id": {"type": "string"},
    "task_status": {
        "enum": ["queued", "started", "finished", "failed", "scheduled", "deferred", "stopped", "canceled"]
    },
    "task_result": {},
    "progress": {"type": "integer", "minimum": 0, "maximum": 100},
    "enqueued_at": TIME,
    "started_at": TIME,
    "ended_at": TIME,
    "error": {"type": ["string", "null"]},
    "queue": {"type": "string"},
    "attempt": {"type": "integer", "minimum": 1},
    "max_attempts": {"type": "integer", "minimum": 1},
    "scheduled_for": TIME,
}
# Every field is always present (null when it does not apply).
TASK_STATUS = {"type": "object", "required": list(TASK_STATUS_PROPERTIES), "properties": TASK_STATUS_PROPERTIES}


def success(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["status", "data"],
        "properties": {"status": {"const": "success"}, "data": data},
    }


def json_content(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def errors(*codes: int) -> dict[str, Any]:
    meaning = {
        400: "Invalid input",
        404: "No such task",
        405: "Method not allowed",
        409: "The task's status does not allow it",
        413: "The image is larger than THUMBNAIL_MAX_UPLOAD_BYTES",
        429: "Too many new tasks from this client (see Retry-After)",
        503: "Redis unreachable, or the queue is full (see Retry-After)",
    }
    return {str(code): json_content(ERROR, meaning[code]) for code in codes}


TASK_ID = {"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}}


def document() -> dict[str, Any]:
    """Build the OpenAPI document."""
    kinds = ["thumbnail", "confirmation_email"]
    submission = {
        "type": "object",
        "required": ["type"],
        "properties": {
            "type": {"type": ["integer", "string"], "enum": [*TASK_TYPES, *[str(n) for n in TASK_TYPES], *kinds]},
            "delay": {"type": "integer", "minimum": 0, "maximum": MAX_DELAY_SECONDS},
            "queue": {"enum": list(settings.TASK_QUEUES)},
            "email": {"type": "string", "format": "email", "maxLength": 254, "description": "confirmation_email"},
        },
    }
    upload = {
        **submission,
        "properties": {
            **submission["properties"],
            "image": {
                "type": "string",
                "contentMediaType": "image/jpeg, image/png, image/gif, image/webp",
                "description": "thumbnail: the image, at most THUMBNAIL_MAX_UPLOAD_BYTES",
            },
        },
    }
    created = success({"type": "object", "required": ["task_id"], "properties": {"task_id": {"type": "string"}}})
    canceled = success(
        {
            "type": "object",
            "required": ["task_id", "task_status", "stop_requested"],
            "properties": {
                "task_id": {"type": "string"},
                "task_status": {"enum": ["canceled", "started"]},
                "stop_requested": {"type": "boolean"},
            },
        }
    )
    events = {"description": "Server-Sent Events until the task(s) end", "content": {"text/event-stream": {}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "taskqueue",
            "version": "1",
            "description": "Run long work in the background. Every JSON answer is "
            '{"status": "success", "data": ...} or {"status": "error", "message": ..., "errors": ...}.',
        },
        "paths": {
            "/tasks": {
                "post": {
                    "summary": "Enqueue a task",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": submission},
                            "application/x-www-form-urlencoded": {"schema": submission},
                            "multipart/form-data": {"schema": upload},
                        },
                    },
                    "responses": {
                        "202": {
                            **json_content(created, "Queued (or scheduled)"),
                            "headers": {"Location": {"schema": {"type": "string"}}},
                        },
                        **errors(400, 405, 413, 429, 503),
                    },
                }
            },
            "/tasks/{task_id}": {
                "get": {
                    "summary": "A task's status",
                    "parameters": [TASK_ID],
                    "responses": {"200": json_content(success(TASK_STATUS), "The task"), **errors(404, 405, 503)},
                }
            },
            "/tasks/{task_id}/cancel": {
                "post": {
                    "summary": "Cancel a waiting task or stop a running one",
                    "parameters": [TASK_ID],
                    "responses": {
                        "200": json_content(canceled, "Canceled: it will never run"),
                        "202": json_content(canceled, "Stop requested: it will end `stopped`"),
                        **errors(404, 405, 409, 503),
                    },
                }
            },
            "/tasks/{task_id}/events": {
                "get": {
                    "summary": "Status and progress pushed as Server-Sent Events",
                    "parameters": [TASK_ID],
                    "responses": {"200": events, **errors(404, 405, 503)},
                }
            },
            "/tasks/events": {
                "get": {
                    "summary": "Several tasks on one event stream",
                    "parameters": [
                        {"name": "id", "in": "query", "required": True, "schema": {"type": "array", "maxItems": 50}}
                    ],
                    "responses": {"200": events, **errors(400, 405, 503)},
                }
            },
        },
    }
