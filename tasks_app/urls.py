from django.urls import path, re_path

from tasks_app import views

app_name = "tasks_app"

urlpatterns = [
    # The API first: scripts poll it far more often than people load pages, and Django tries
    # the patterns in order. The original app's routes, without a trailing slash; one is tolerated.
    re_path(r"^tasks/?$", views.create_task, name="create_task"),
    re_path(r"^tasks/events/?$", views.tasks_events, name="tasks_events"),
    re_path(r"^tasks/(?P<task_id>[^/]+)/?$", views.task_status, name="task_status"),
    re_path(r"^tasks/(?P<task_id>[^/]+)/cancel/?$", views.cancel_task, name="cancel_task"),
    re_path(r"^tasks/(?P<task_id>[^/]+)/events/?$", views.task_events, name="task_events"),
    path("", views.index, name="index"),
    path("openapi.json", views.openapi_document, name="openapi"),
    path("jobs/<str:task_id>", views.job_page, name="job_page"),
    path("jobs/<str:task_id>/cancel", views.job_page_cancel, name="job_page_cancel"),
    path("confirm/<str:token>", views.confirm_email, name="confirm_email"),
]
