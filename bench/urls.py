from django.http import JsonResponse
from django.urls import include, path


def bare(request):
    """The least a Django JSON view can do: the baseline for the API's GET rate."""
    return JsonResponse({"status": "success", "data": {}})


urlpatterns = [path("bench/bare", bare), path("", include("taskqueue_site.urls"))]
