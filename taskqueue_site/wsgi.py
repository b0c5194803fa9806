"""The WSGI application, for `manage.py runserver`-like tools; production serves asgi.py."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "taskqueue_site.settings")

application = get_wsgi_application()
