"""The site's settings plus a bare JSON view, the yardstick for GET /tasks/<id>."""

from taskqueue_site.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
