"""The ASGI application the production server runs.

The two event-stream routes go to Django's ASGI handler: hundreds may stay open without holding
a thread each. Every other request goes to Django's WSGI handler through a2wsgi, because under
the ASGI handler each of Django's middleware hops to a thread and back.
"""

import os
import re

from a2wsgi import WSGIMiddleware
from django.core.asgi import get_asgi_application
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "taskqueue_site.settings")

streams = get_asgi_application()
pages_and_api = WSGIMiddleware(get_wsgi_application())
STREAM_PATH = re.compile(r"^/tasks/(?:[^/]+/)?events/?$")


async def application(scope, receive, send):
    handler = streams if scope["type"] != "http" or STREAM_PATH.match(scope["path"]) else pages_and_api
    await handler(scope, receive, send)
