"""Validation of task submissions, from the page's form and from the JSON/form API."""

import json
import unicodedata
from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent
from django.http import HttpRequest
from django.http.multipartparser import MultiPartParserError

from tasks_app import jobs, thumbnails
from tasks_app.jobs import MAX_DELAY_SECONDS, TASK_TYPES

FORM_CONTENT_TYPES = {"application/x-www-form-urlencoded", "multipart/form-data"}
JSON_CONTENT_TYPES = {"application/json"}


class QueueOptionsForm(forms.Form):
    """The optional start delay and queue that every kind of task takes."""

    delay = forms.IntegerField(
        required=False,
        min_value=0,
        max_value=MAX_DELAY_SECONDS,
        label="Start after (seconds)",
        error_messages={"invalid": "The delay must be a whole number of seconds."},
        widget=forms.NumberInput(attrs={"placeholder": "0", "min": 0, "max": MAX_DELAY_SECONDS, "step": 1}),
    )
    queue = forms.TypedChoiceField(
        required=False,
        empty_value="default",
        choices=[(name, name.capitalize()) for name in settings.TASK_QUEUES],
        initial="default",
        label="Priority",
        error_messages={"invalid_choice": "The queue must be one of: " + ", ".join(settings.TASK_QUEUES) + "."},
    )

    def clean_delay(self) -> int:
        return self.cleaned_data["delay"] or 0

    def queue_options(self) -> dict[str, Any]:
        return {"queue_name": self.cleaned_data["queue"], "delay": self.cleaned_data["delay"]}

    error_status = 400  # the HTTP status of an invalid submission

    def enqueue(self, submitter: dict[str, Any]) -> str:
        raise NotImplementedError  # each kind of task enqueues itself; returns the job's id


class TaskForm(QueueOptionsForm):
    """A sleep task: type 0 to 3."""

    field_order = ("type", "delay", "queue")
    type = forms.IntegerField(
        min_value=min(TASK_TYPES),
        max_value=max(TASK_TYPES),
        error_messages={
            "required": "Choose a task type.",
            "invalid": "The task type must be a whole number (0 to 3), thumbnail or confirmation_email.",
        },
    )

    def enqueue(self, submitter: dict[str, Any]) -> str:
        return jobs.enqueue_task(self.cleaned_data["type"], **self.queue_options(), submitter=submitter)


class ThumbnailForm(QueueOptionsForm):
    """type=thumbnail: an image (multipart field `image`) to make thumbnails of."""

    image = forms.FileField(
        label="Image",
        error_messages={
            "required": "Choose an image to upload (a multipart/form-data field named image).",
            "empty": "The uploaded file is empty.",
        },
        widget=forms.FileInput(attrs={"accept": "image/jpeg,image/png,image/gif,image/webp"}),
    )

    def clean_image(self) -> thumbnails.CheckedImage:
        try:
            return thumbnails.check_upload(self.cleaned_data["image"])
        except thumbnails.ImageRejected as exc:
            raise forms.ValidationError(str(exc), code=exc.code) from None

    @property
    def error_status(self) -> int:
        """413 for an image over the upload limit, 400 for anything else wrong."""
        return 413 if self.has_error("image", code="too_large") else 400

    def enqueue(self, submitter: dict[str, Any]) -> str:
        return jobs.enqueue_thumbnails(self.cleaned_data["image"], **self.queue_options(), submitter=submitter)


class ConfirmationEmailForm(QueueOptionsForm):
    """type=confirmation_email: an address to send a confirmation link to."""

    email = forms.EmailField(
        label="Email address",
        max_length=254,
        error_messages={"required": "Enter an email address.", "invalid": "Enter a valid email address."},
        widget=forms.EmailInput(attrs={"autocomplete": "email", "placeholder": "you@example.com"}),
    )

    def clean_email(self) -> str:
        address = self.cleaned_data["email"]
        local, _, domain = address.rpartition("@")
        domain = domain.lower()  # domains are case-insensitive; the local part may not be
        # Refuse what no server delivers (control, format and separator characters such as U+2028
        # and U+202E) and what would be mailed elsewhere than shown: encoded words (=?utf-8?b?...?=)
        # are decoded when sent, and IDNA maps some domains (fullwidth letters, ß) to other ones.
        try:
            as_shown = domain.isascii() or domain.encode("idna").decode("idna") == domain
        except UnicodeError:
            as_shown = False
        if not as_shown or "=?" in address or any(unicodedata.category(char)[0] in "CZ" for char in address):
            raise forms.ValidationError("Enter an email address that can be sent to as written.", code="invalid")
        return f"{local}@{domain}"

    def enqueue(self, submitter: dict[str, Any]) -> str:
        return jobs.enqueue_confirmation_email(self.cleaned_data["email"], **self.queue_options(), submitter=submitter)


FORMS_BY_TYPE: dict[str, type[QueueOptionsForm]] = {
    "thumbnail": ThumbnailForm,
    "confirmation_email": ConfirmationEmailForm,
}


def submission_form(data: Any, files: Any = None) -> QueueOptionsForm:
    """Bind the form of the kind of task that `type` names; numbers (and anything else) are sleeps."""
    form_class = FORMS_BY_TYPE.get(str(data.get("type") or "").strip(), TaskForm)
    return form_class(data, files)


class UnreadableRequest(Exception):
    """The body could not be read as a task submission at all."""


class UploadTooLarge(UnreadableRequest):
    """A multipart body larger than any upload may be (HTTP 413)."""


def read_submission(request: HttpRequest) -> dict[str, Any]:
    """Return the submitted fields of a POST, from form data or a JSON object, or raise UnreadableRequest.

    Only thumbnail uploads (multipart) may exceed TASKS_MAX_BODY_BYTES, by at most the upload limit.
    """
    limit = settings.TASKS_MAX_BODY_BYTES
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise UnreadableRequest("The Content-Length header is not a number.") from None
    content_type = request.content_type or ""
    upload = content_type == "multipart/form-data" and length > limit
    if upload and length > settings.THUMBNAIL_MAX_UPLOAD_BYTES + limit:
        raise UploadTooLarge(thumbnails.too_large_message())
    if length > limit and not upload:
        raise UnreadableRequest(f"The request body is larger than {limit} bytes.")

    try:
        if content_type in JSON_CONTENT_TYPES:
            return read_json_object(request.body)
        if content_type in FORM_CONTENT_TYPES or (not content_type and not length):
            fields = {key: request.POST.get(key) for key in request.POST}
            if upload and fields.get("type") != "thumbnail":
                raise UnreadableRequest(f"The request body is larger than {limit} bytes.")
            return fields
    except RequestDataTooBig:
        raise UnreadableRequest(f"The request body is larger than {limit} bytes.") from None
    except TooManyFieldsSent:
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        raise UnreadableRequest(f"The form has too many fields: at most {limit} are read.") from None
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
    except RecursionError:
        raise UnreadableRequest("The JSON body is nested too deeply.") from None
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
