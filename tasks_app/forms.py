"""Validation of task submissions, from the page's form and from the JSON/form API."""

import json
from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent
from django.http import HttpRequest
from django.http.multipartparser import MultiPartParserError

from tasks_app.services import MAX_DELAY_SECONDS, TASK_TYPES

FORM_CONTENT_TYPES = {"application/x-www-form-urlencoded", "multipart/form-data"}
JSON_CONTENT_TYPES = {"application/json"}


class TaskForm(forms.Form):
    type = forms.IntegerField(
        min_value=min(TASK_TYPES),
        max_value=max(TASK_TYPES),
        error_messages={
            "required": "Choose a task type.",
            "invalid": "The task type must be a whole number.",
        },
    )
    delay = forms.IntegerField(
        required=False,
        min_value=0,
        max_value=MAX_DELAY_SECONDS,
        label="Start after (seconds)",
        error_messages={"invalid": "The delay must be a whole number of seconds."},
        widget=forms.NumberInput(attrs={"placeholder": "0", "min": 0, "max": MAX_DELAY_SECONDS, "step": 1}),
    )
    queue = forms.ChoiceField(
        required=False,
        choices=[(name, name.capitalize()) for name in settings.TASK_QUEUES],
        initial="default",
        label="Priority",
        error_messages={"invalid_choice": "The queue must be one of: " + ", ".join(settings.TASK_QUEUES) + "."},
    )

    def clean_delay(self) -> int:
        return self.cleaned_data["delay"] or 0

    def clean_queue(self) -> str:
        return self.cleaned_data["queue"] or "default"


class UnreadableRequest(Exception):
    """The body could not be read as a task submission at all."""


def read_submission(request: HttpRequest) -> dict[str, Any]:
    """Return the submitted fields of a POST, from form data or a JSON object.

    Raises UnreadableRequest for oversized bodies, unsupported content types, broken
    encodings and malformed JSON.
    """
    limit = settings.TASKS_MAX_BODY_BYTES
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise UnreadableRequest("The Content-Length header is not a number.") from None
    if length > limit:
        raise UnreadableRequest(f"The request body is larger than {limit} bytes.")

    content_type = request.content_type or ""
    try:
        if content_type in JSON_CONTENT_TYPES:
            return read_json_object(request.body)
        if content_type in FORM_CONTENT_TYPES or (not content_type and not length):
            return {key: request.POST.get(key) for key in request.POST}
    except (RequestDataTooBig, TooManyFieldsSent):
        raise UnreadableRequest(f"The request body is larger than {limit} bytes.") from None
    except (MultiPartParserError, SuspiciousOperation, UnicodeDecodeError) as exc:
        raise UnreadableRequest(f"The form data could not be read: {exc}") from None
    raise UnreadableRequest(
        f"Unsupported content type {content_type!r}: send form data "
        "(application/x-www-form-urlencoded or multipart/form-data) or application/json."
    )


def read_json_object(body: bytes) -> dict[str, Any]:
    """Decode a JSON object, turning JSON numbers and strings into form-style strings."""
    try:
        payload = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise UnreadableRequest("The JSON body is not valid UTF-8.") from None
    except ValueError as exc:  # JSONDecodeError, and integers past Python's digit limit
        raise UnreadableRequest(f"The body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise UnreadableRequest('The JSON body must be an object such as {"type": 1}.')
    return {key: json_field_as_text(value) for key, value in payload.items()}


def json_field_as_text(value: Any) -> str | None:
    """Map a JSON value to what a form field would receive; non-scalars become invalid text."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        # true/false, 1.5, lists and objects are not task types; a marker the
        # IntegerField cannot parse yields its ordinary "whole number" error.
        return "not-an-integer"
    return str(value)
