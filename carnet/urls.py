from django.urls import include, path, re_path

from .api import api
from .core.middleware import problem_response


def api_not_found(request, rest=""):
    return problem_response(
        404, "not_found", "Not found", f"There is no API endpoint at {request.path}."
    )


urlpatterns = [
    path("api/v1/", api.urls),
    re_path(r"^api/(?P<rest>.*)$", api_not_found),
    path("", include("carnet.staff.urls")),
    path("", include("carnet.passes.setup.urls")),  # before clinic's settings/<kind>/
    path("", include("carnet.clinic.urls")),
    path("", include("carnet.people.urls")),
    path("", include("carnet.billing.urls")),
    path("", include("carnet.giftcards.urls")),
    path("", include("carnet.passes.packages.urls")),
    path("", include("carnet.passes.memberships.urls")),
    path("", include("carnet.scheduling.urls")),
    path("", include("carnet.reports.urls")),
    path("", include("carnet.imports.urls")),
    path("", include("carnet.accounting.urls")),
    path("portal/", include("carnet.portal.urls")),
    path("book/", include("carnet.scheduling.booking_urls")),
    path("calendar/", include("carnet.scheduling.ical")),
]
