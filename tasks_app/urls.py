from django.urls import path, re_path

from tasks_app import views

app_name = "tasks_app"

urlpatterns = [
    path("", views.index, name="index"),
    path("jobs/<str:task_id>", views.job_page, name="job_page"),
    # The original app's routes, without a trailing slash; one is tolerated.
    re_path(r"^tasks/?$", views.create_task, name="create_task"),
    re_path(r"^tasks/(?P<task_id>[^/]+)/?$", views.task_status, name="task_status"),
]
