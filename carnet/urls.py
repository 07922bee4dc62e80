from django.urls import include, path, re_path

from .api import api
from .core.middleware import problem_response


def api_not_found(request, rest=""):
    return problem_response(
        404, "not_found", "Not found", f"There is no API endpoint at {request.path}."
    )


def by_first_segment(urls):
    """The API's flat list of routes (164, tried in turn by every request) as one include per
    literal first path segment: a request tries the 30 segments, then its own segment's routes.
    The segments are distinct literals, so a path can only match within its own, where ninja's
    order is kept; routes without a slash stay as they are. Every route resolves and reverses as in
    the flat list (carnet/core/tests/test_urls.py). Issue 25: resolving was 5 % of a redemption's
    Python time."""
    patterns, app_name, namespace = urls
    if any("<" in str(p.pattern).split("/")[0] for p in patterns):
        return urls  # a route that starts with a value: keep the flat order
    groups: dict[str, list] = {}
    out = []
    for p in patterns:
        head, slash, rest = str(p.pattern).partition("/")
        if not (slash and head):
            out.append(p)
            continue
        if head not in groups:
            groups[head] = []
            out.append((head, groups[head]))
        groups[head].append(path(rest, p.callback, p.default_args, p.name))
    return (
        [
            path(f"{item[0]}/", include(item[1])) if isinstance(item, tuple) else item
            for item in out
        ],
        app_name,
        namespace,
    )


urlpatterns = [
    path("api/v1/", by_first_segment(api.urls)),
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
