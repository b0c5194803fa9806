import re

from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from django.views.static import serve

# django-rq's dashboard registers itself inside the admin (/admin/django_rq/dashboard/),
# so it is staff-only and linked from the admin index.
urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("tasks_app.urls")),
]


def serve_media(request, path):
    """Uploads and thumbnails from MEDIA_ROOT, read at request time (tests point it elsewhere)."""
    return serve(request, path, document_root=settings.MEDIA_ROOT)


# Django serves media only when asked to (SERVE_MEDIA) and when it lives on this site, not in a bucket.
if settings.SERVE_MEDIA and settings.MEDIA_URL.startswith("/"):
    urlpatterns.append(re_path(rf"^{re.escape(settings.MEDIA_URL.lstrip('/'))}(?P<path>.*)$", serve_media))

handler400 = "tasks_app.views.bad_request"
handler403 = "tasks_app.views.permission_denied"
handler404 = "tasks_app.views.not_found"
handler500 = "tasks_app.views.server_error"
