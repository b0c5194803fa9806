"""Middleware of the tasks app (settings.MIDDLEWARE)."""

from django.http import HttpRequest, HttpResponse
from django.utils.deprecation import MiddlewareMixin

from tasks_app.health import HEALTH_PATH, healthz


class HealthCheckMiddleware(MiddlewareMixin):
    """Answer /healthz before host validation, the HTTPS redirect, sessions and CSRF.

    Load balancers and container healthchecks probe by IP address (not an allowed host) over
    plain HTTP inside the network; they must still get the real answer. The answer carries
    no user's data and sets no cookie.
    """

    def process_request(self, request: HttpRequest) -> HttpResponse | None:
        if request.path_info == HEALTH_PATH:
            return healthz(request)
        return None
