from django.http import JsonResponse
from django.urls import path

from taskqueue_site import urls as site_urls


def bare(request):
    """The least a Django JSON view can do: the baseline for the API's GET rate."""
    return JsonResponse({"status": "success", "data": {}})


# The site's own routes as they are, not behind a further include(): each level of nesting costs
# every request a resolver match, which the site in production does not pay.
urlpatterns = [path("bench/bare", bare), *site_urls.urlpatterns]
handler400, handler403 = site_urls.handler400, site_urls.handler403
handler404, handler500 = site_urls.handler404, site_urls.handler500
