"""The ASGI application the production server runs (Django's stock handler)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "taskqueue_site.settings")

application = get_asgi_application()
