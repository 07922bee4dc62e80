from django.urls import Resolver404, include, path, re_path
from django.urls.resolvers import RoutePattern, URLResolver

from .api import api
from .core.middleware import problem_response


def api_not_found(request, rest=""):
    return problem_response(
        404, "not_found", "Not found", f"There is no API endpoint at {request.path}."
    )


class _BySegment(URLResolver):
    """The API's resolver: a path is tried first against its own first segment's entries alone (a
    resolver like this one, same prefix and namespace, holding those only), then, if they do not
    take it, against every entry in order as Django does (a 404's "tried" list).
    The segments are literals, so the entries of a path's segment are the only ones that can
    match it: the answer is the one the whole list gives, found without trying 50 others, each
    raising Resolver404."""

    def __init__(self, pattern, patterns, *, app_name, namespace):
        super().__init__(pattern, patterns, app_name=app_name, namespace=namespace)
        heads: dict[str, list] = {}
        for entry in patterns:  # (two routes may share a literal: both, in order)
            heads.setdefault(str(entry.pattern), []).append(entry)
        self._alone = {
            head: URLResolver(pattern, entries, app_name=app_name, namespace=namespace)
            for head, entries in heads.items()
        }

    def resolve(self, path):
        match = self.pattern.match(str(path))
        if match:
            head, slash, _ = match[0].partition("/")
            alone = self._alone.get(head + slash)
            if alone is not None:
                try:
                    return alone.resolve(path)
                except Resolver404:
                    pass
        return super().resolve(path)


def by_first_segment(prefix: str, urls):
    """The API's flat list of routes (164, tried in turn by every request) as one include per
    literal first path segment, under a resolver that goes straight to a path's segment
    (`_BySegment`). Within a segment ninja's order is kept; routes without a slash stay as they
    are. Every route resolves and reverses as in the flat list (carnet/core/tests/test_urls.py).
    Issue 25: resolving was 5 % of a redemption's Python time."""
    patterns, app_name, namespace = urls
    if any("<" in str(p.pattern).split("/")[0] for p in patterns):
        return path(prefix, urls)  # a route that starts with a value: keep the flat order
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
    return _BySegment(
        RoutePattern(prefix, is_endpoint=False),
        [
            path(f"{item[0]}/", include(item[1])) if isinstance(item, tuple) else item
            for item in out
        ],
        app_name=app_name,
        namespace=namespace,
    )


urlpatterns = [
    by_first_segment("api/v1/", api.urls),
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
