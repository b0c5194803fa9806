from django.contrib import admin
from django.urls import include, path

# django-rq's dashboard registers itself inside the admin (/admin/django_rq/dashboard/),
# so it is staff-only and linked from the admin index.
urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("tasks_app.urls")),
]

handler400 = "tasks_app.views.bad_request"
handler403 = "tasks_app.views.permission_denied"
handler404 = "tasks_app.views.not_found"
handler500 = "tasks_app.views.server_error"
