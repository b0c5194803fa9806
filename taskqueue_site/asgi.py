"""The production entry point: `uvicorn taskqueue_site.asgi:application`.

Only the event streams need ASGI (hundreds may stay open without holding a thread each). Django
runs every other request faster through its WSGI handler: under its ASGI handler each classic
middleware hops to a thread and back (about 30 hops a request, 10x slower here). So this
application routes: streams to Django's ASGI handler, everything else to Django's WSGI handler
on a small thread pool (a2wsgi).
"""

import os
import re

from a2wsgi import WSGIMiddleware
from django.core.asgi import get_asgi_application
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "taskqueue_site.settings")

django_asgi = get_asgi_application()
django_wsgi = WSGIMiddleware(get_wsgi_application(), workers=int(os.environ.get("WEB_THREADS", "8")))

STREAM_PATH = re.compile(r"^/tasks/(?:[^/]+/)?events/?$")


async def application(scope, receive, send):
    if scope["type"] == "http" and not STREAM_PATH.match(scope["path"]):
        await django_wsgi(scope, receive, send)
    else:
        await django_asgi(scope, receive, send)
