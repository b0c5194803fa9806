"""GET /healthz, for load balancers, container healthchecks and monitoring.

HealthCheckMiddleware serves it ahead of the other middleware: see tasks_app/middleware.py.
"""

import logging

from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache

from tasks_app import services
from tasks_app.responses import json_error, json_methods, json_success

logger = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"


@never_cache
@json_methods(["GET", "HEAD"])
def healthz(request: HttpRequest) -> HttpResponse:
    """Report Redis reachability, waiting jobs per queue and live workers; 503 when Redis is down."""
    try:
        health = services.check_health()
    except services.QueueUnavailable as exc:
        # The reason names internal addresses: it goes to the log, not to whoever asked.
        logger.warning("health check failed: Redis unreachable: %s", exc)
        details = {"redis": "unreachable", "queues": None, "workers": None}
        return json_error("Redis cannot be reached.", 503, data=details, headers={"Retry-After": "5"})
    return json_success(health.as_dict())
