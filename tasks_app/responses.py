"""The API's one JSON shape, for successes and errors alike."""

from collections.abc import Callable, Iterable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse


def json_success(data: dict[str, Any], status: int = 200) -> JsonResponse:
    """Answer {"status": "success", "data": {...}}."""
    return JsonResponse({"status": "success", "data": data}, status=status)


def json_error(
    message: str,
    status: int,
    errors: dict[str, list[str]] | None = None,
    headers: dict[str, str] | None = None,
    data: dict[str, Any] | None = None,
) -> JsonResponse:
    """Answer {"status": "error", "message": "...", "errors": {...}}, with "data" when there is some."""
    body: dict[str, Any] = {"status": "error", "message": message}
    if errors is not None:
        body["errors"] = errors
    if data is not None:
        body["data"] = data
    return JsonResponse(body, status=status, headers=headers)


def json_methods(methods: Iterable[str]) -> Callable:
    """Like require_http_methods, but a wrong method gets a JSON 405 with an Allow header."""
    allowed = sorted(set(methods))

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in allowed:
                return method_not_allowed(request, ", ".join(allowed))
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def method_not_allowed(request: HttpRequest, allowed: str = "GET, HEAD") -> JsonResponse:
    return json_error(f"Method {request.method} is not allowed here; use {allowed}.", 405, headers={"Allow": allowed})
