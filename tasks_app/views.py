"""HTTP views for people (the pages, CSRF-protected forms) and scripts (the JSON API of responses.py)."""

from collections.abc import Callable

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse, StreamingHttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from tasks_app import connections, emails, events, jobs, openapi, permissions, status, thumbnails
from tasks_app.forms import (
    ConfirmationEmailForm,
    QueueOptionsForm,
    TaskForm,
    ThumbnailForm,
    UnreadableRequest,
    UploadTooLarge,
    read_submission,
    submission_form,
)
from tasks_app.responses import json_error, json_methods, json_success, method_not_allowed
from tasks_app.uploads import uploaded_files

QUEUE_DOWN_MESSAGE = "The task queue is unavailable right now (Redis cannot be reached). Try again shortly."
RETRY_AFTER = {"Retry-After": "5"}


def with_headers(response: HttpResponse, headers: dict[str, str]) -> HttpResponse:
    for name, value in headers.items():
        response[name] = value
    return response


# --- Pages for people ---------------------------------------------------------------------------


# The page's forms, by the name the template knows each by.
PAGE_FORMS = {"form": TaskForm, "thumbnail_form": ThumbnailForm, "email_form": ConfirmationEmailForm}


@require_http_methods(["GET", "HEAD", "POST"])
def index(request: HttpRequest) -> HttpResponse:
    """Show the forms; without JavaScript, a POST here enqueues and redirects to the job page."""
    if request.method != "POST":
        return render_index(request)
    form = submission_form(request.POST, uploaded_files(request))
    if not form.is_valid():
        return render_index(request, form, code=form.error_status)
    try:
        task_id = enqueue_from_form(request, form, request.user)
    except jobs.RateLimited as exc:
        form.add_error(None, str(exc))
        return with_headers(render_index(request, form, code=429), {"Retry-After": str(exc.retry_after)})
    except (jobs.QueueFull, connections.QueueUnavailable) as exc:
        form.add_error(None, str(exc) if isinstance(exc, jobs.QueueFull) else QUEUE_DOWN_MESSAGE)
        return with_headers(render_index(request, form, code=503), RETRY_AFTER)
    except thumbnails.ImageRejected as exc:  # found by decoding, which waits until the request is admitted
        form.add_error("image", str(exc))
        return render_index(request, form, code=400)
    return job_page_redirect(task_id, jobs.cancel_token(task_id))


def job_page_redirect(task_id: str, token: str) -> HttpResponse:
    """To the job page, keeping the proof of submission that its Cancel button needs (no-JS clients)."""
    url = reverse("tasks_app:job_page", args=[task_id])
    return HttpResponseRedirect(f"{url}?{urlencode({'token': token})}" if token else url, status=303)


def may_cancel(request: HttpRequest, task_id: str, token: str) -> bool:
    """The submitter (its cancel token) or an admin with both job permissions, on the CSRF-protected page."""
    return jobs.holds_cancel_token(task_id, token) or request.user.has_perms([permissions.CANCEL, permissions.STOP])


def render_index(request: HttpRequest, submitted: QueueOptionsForm | None = None, code: int = 200) -> HttpResponse:
    """The page with every form empty, except the one just submitted (with its errors)."""
    context = {
        name: submitted if type(submitted) is form_class else form_class() for name, form_class in PAGE_FORMS.items()
    }
    context["max_upload_bytes"] = settings.THUMBNAIL_MAX_UPLOAD_BYTES
    context["max_upload"] = thumbnails.describe_bytes(settings.THUMBNAIL_MAX_UPLOAD_BYTES)
    return render(request, "tasks_app/index.html", context, status=code)


@never_cache
@require_http_methods(["GET", "HEAD"])
def job_page(request: HttpRequest, task_id: str) -> HttpResponse:
    """Show one job's status; the page reloads itself until the job ends."""
    try:
        task = status.get_task_status(task_id)
        confirmed_at = emails.confirmed_at(task.task_result["email"]) if sent_email(task) else None
    except status.TaskNotFound:
        return render(request, "tasks_app/job.html", {"task_id": task_id, "missing": True}, status=404)
    except connections.QueueUnavailable:
        context = {"task_id": task_id, "unavailable": QUEUE_DOWN_MESSAGE}
        return with_headers(render(request, "tasks_app/job.html", context, status=503), RETRY_AFTER)
    token = request.GET.get("token", "")
    context = {"task_id": task_id, "task": task, "confirmed_at": confirmed_at, "cancel_token": token}
    context["may_cancel"] = may_cancel(request, task_id, token)
    return render(request, "tasks_app/job.html", context)


def sent_email(task: status.TaskStatus) -> bool:
    """A finished confirmation email job (its result names the address)."""
    return isinstance(task.task_result, dict) and isinstance(task.task_result.get("email"), str)


@require_http_methods(["POST"])
def job_page_cancel(request: HttpRequest, task_id: str) -> HttpResponse:
    """The job page's Cancel button (CSRF-protected form); back to the job page either way."""
    if not may_cancel(request, task_id, request.POST.get("cancel_token", "")):
        raise PermissionDenied("Only the task's submitter or an operator may cancel it.")
    try:
        jobs.cancel_task(task_id)
    except status.TaskNotFound:
        return render(request, "tasks_app/job.html", {"task_id": task_id, "missing": True}, status=404)
    except connections.QueueUnavailable:
        context = {"task_id": task_id, "unavailable": QUEUE_DOWN_MESSAGE}
        return with_headers(render(request, "tasks_app/job.html", context, status=503), RETRY_AFTER)
    except jobs.TaskStateConflict:
        pass  # it ended meanwhile; the page shows how
    return job_page_redirect(task_id, request.POST.get("cancel_token", ""))


# The link's signed token is the proof; no session rides on it, so a forged POST gains nothing
# (and a CSRF cookie would only fail people who open the link in a browser without cookies).
@csrf_exempt
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def confirm_email(request: HttpRequest, token: str) -> HttpResponse:
    """The link in a confirmation email: a page whose button records the confirmation (or says why not).

    Opening the link changes nothing. Mail scanners and link previews fetch links on their own,
    and must not confirm an address that nobody read.
    """
    try:
        if request.method == "POST":
            emails.confirm(token)
            return HttpResponseRedirect(request.path, status=303)
        address, confirmed_at = emails.read_confirmation(token)
    except emails.ConfirmationExpired as exc:
        context = {
            "state": "expired",
            "email": exc.address,
            "email_form": ConfirmationEmailForm(initial={"email": exc.address}),
        }
        return render(request, "tasks_app/confirm.html", context, status=410)
    except emails.InvalidConfirmation:
        return render(request, "tasks_app/confirm.html", {"state": "invalid"}, status=400)
    except connections.QueueUnavailable:
        context = {"state": "unavailable", "unavailable": QUEUE_DOWN_MESSAGE}
        return with_headers(render(request, "tasks_app/confirm.html", context, status=503), RETRY_AFTER)
    context = {"state": "confirmed" if confirmed_at else "ready", "email": address, "confirmed_at": confirmed_at}
    return render(request, "tasks_app/confirm.html", context)


# --- JSON API for scripts -----------------------------------------------------------------------


# The original app's clients (curl -F, jQuery's $.ajax) post without a CSRF token, and the API
# acts for nobody in particular (no session, no user), so a forged request gains nothing.
@csrf_exempt
@json_methods(["POST"])
def create_task(request: HttpRequest) -> HttpResponse:
    """Enqueue a task from form data or JSON; answer 202 with its id and status URL."""
    try:
        submission = read_submission(request)
    except UploadTooLarge as exc:
        return json_error(str(exc), 413, errors={"image": [str(exc)]})
    except UnreadableRequest as exc:
        return json_error(str(exc), 400, errors={"type": [str(exc)]})
    form = submission_form(submission, uploaded_files(request))
    if not form.is_valid():
        errors = {field: [str(message) for message in messages] for field, messages in form.errors.items()}
        message = "The task could not be created: the input is invalid."
        if form.error_status == 413:
            message = errors["image"][0]
        return json_error(message, form.error_status, errors=errors)
    try:
        task_id = enqueue_from_form(request, form, request.user)
    except jobs.RateLimited as exc:
        return json_error(str(exc), 429, headers={"Retry-After": str(exc.retry_after)})
    except jobs.QueueFull as exc:
        return json_error(str(exc), 503, headers=RETRY_AFTER)
    except connections.QueueUnavailable:
        return json_error(QUEUE_DOWN_MESSAGE, 503, headers=RETRY_AFTER)
    except thumbnails.ImageRejected as exc:  # found by decoding, which waits until the request is admitted
        return json_error("The task could not be created: the input is invalid.", 400, errors={"image": [str(exc)]})
    status_url = request.build_absolute_uri(reverse("tasks_app:task_status", args=[task_id]))
    response = json_success({"task_id": task_id, "cancel_token": jobs.cancel_token(task_id)}, status=202)
    response["Location"] = status_url
    return response


# Read-only views: any other method gets the API's 405, not the CSRF check's HTML 403.
@csrf_exempt
@never_cache
@json_methods(["GET", "HEAD"])
def task_status(request: HttpRequest, task_id: str) -> HttpResponse:
    """Report a job's status, progress, times, result and error."""
    try:
        task = status.get_task_status(task_id)
    except status.TaskNotFound:
        return json_error(f"No task with id {task_id!r}: it does not exist or has expired.", 404)
    except connections.QueueUnavailable:
        return json_error(QUEUE_DOWN_MESSAGE, 503, headers=RETRY_AFTER)
    return json_success(task.as_dict())


MAX_STREAMED_TASKS = 50


@csrf_exempt
@never_cache
async def task_events(request: HttpRequest, task_id: str) -> HttpResponse:
    """Stream one task's status and progress changes as Server-Sent Events until it ends."""
    return await event_stream(request, [task_id], single=True)


@csrf_exempt
@never_cache
async def tasks_events(request: HttpRequest) -> HttpResponse:
    """Stream several tasks at once (?id=...&id=...): the page's one connection for all its rows."""
    if request.method not in ("GET", "HEAD"):
        return method_not_allowed(request)
    task_ids = list(dict.fromkeys(request.GET.getlist("id")))
    if not task_ids:
        return json_error("Name at least one task: ?id=<task_id>.", 400, errors={"id": ["This field is required."]})
    if len(task_ids) > MAX_STREAMED_TASKS:
        message = f"At most {MAX_STREAMED_TASKS} tasks per stream."
        return json_error(message, 400, errors={"id": [message]})
    return await event_stream(request, task_ids, single=False)


async def event_stream(request: HttpRequest, task_ids: list[str], single: bool) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        return method_not_allowed(request)
    if single:
        try:  # an unknown task is a 404 before any stream starts
            await sync_to_async(status.get_task_status, thread_sensitive=False)(task_ids[0])
        except status.TaskNotFound:
            return json_error(f"No task with id {task_ids[0]!r}: it does not exist or has expired.", 404)
        except connections.QueueUnavailable:
            return json_error(QUEUE_DOWN_MESSAGE, 503, headers=RETRY_AFTER)
    try:
        await events.hub().ready()
    except TimeoutError:
        return json_error(QUEUE_DOWN_MESSAGE, 503, headers=RETRY_AFTER)
    body = events.stream_async(task_ids, read_status_or_none, status.TERMINAL_STATUSES.__contains__)
    response = StreamingHttpResponse(body, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # let proxies pass each event at once
    return response


def read_status_or_none(task_id: str) -> dict | None:
    try:
        return status.get_task_status(task_id).as_dict()
    except status.TaskNotFound:
        return None


# Cancelling needs the cancel token that only the submitter was given (the id is no secret:
# admin viewers see every id). No session rides on it, so no CSRF token is asked for.
@csrf_exempt
@json_methods(["POST"])
def cancel_task(request: HttpRequest, task_id: str) -> HttpResponse:
    """Cancel a waiting task (200, canceled) or stop a running one (202, stop requested)."""
    if not jobs.holds_cancel_token(task_id, request.headers.get("X-Cancel-Token", "")):
        return json_error("Only the task's submitter may cancel it: send the cancel_token its 202 gave.", 403)
    try:
        outcome = jobs.cancel_task(task_id)
    except status.TaskNotFound:
        return json_error(f"No task with id {task_id!r}: it does not exist or has expired.", 404)
    except jobs.TaskStateConflict as exc:
        return json_error(str(exc), 409, errors={"task_status": [exc.status]})
    except connections.QueueUnavailable:
        return json_error(QUEUE_DOWN_MESSAGE, 503, headers=RETRY_AFTER)
    if outcome == "stopped":
        return json_success({"task_id": task_id, "task_status": "started", "stop_requested": True}, status=202)
    return json_success({"task_id": task_id, "task_status": outcome, "stop_requested": False})


def enqueue_from_form(request: HttpRequest, form: QueueOptionsForm, user) -> str:
    """Enqueue a validated submission if the client and the queue may take it; record who sent it."""
    jobs.admit_submission(request.META.get("REMOTE_ADDR", "unknown"), form.cleaned_data["queue"])
    user_id, username = (user.pk, user.get_username()) if user and user.is_authenticated else (None, "")
    return form.enqueue({"user_id": user_id, "username": username, "ip": request.META.get("REMOTE_ADDR", "")})


@json_methods(["GET", "HEAD"])
def openapi_document(request: HttpRequest) -> HttpResponse:
    """The OpenAPI description of the JSON API."""
    return JsonResponse(openapi.document(), json_dumps_params={"indent": 2})


# --- Error handlers (settings.DEBUG off) --------------------------------------------------------


def error_handler(code: int, message: str) -> Callable[..., HttpResponse]:
    """JSON for API paths and clients that ask for JSON, the status's page for people."""

    def handler(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
        if request.path.startswith("/tasks") or "application/json" in request.headers.get("Accept", ""):
            return json_error(message.format(path=request.path), code)
        return render(request, f"{code}.html", status=code)

    return handler


bad_request = error_handler(400, "Bad request.")
permission_denied = error_handler(403, "Permission denied.")
not_found = error_handler(404, "Nothing at {path}.")
server_error = error_handler(500, "Internal server error.")
