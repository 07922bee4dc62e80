"""carnet.urls.by_first_segment: the API's routes grouped by first segment resolve and reverse
exactly as ninja's flat list does (issue 25)."""

import re

from django.urls import NoReverseMatch, get_resolver, path
from django.urls.resolvers import RegexPattern, URLResolver

from carnet.api import api
from carnet.urls import api_not_found, by_first_segment

_VALUE = re.compile(r"<(?:\w+:)?(\w+)>")


def _resolvers():
    """The flat list and the grouped one, made from the same views (`api.urls` makes new ones each
    time it is read)."""
    urls = api.urls
    return (
        URLResolver(RegexPattern(r"^/"), [path("api/v1/", urls)]),
        URLResolver(RegexPattern(r"^/"), [by_first_segment("api/v1/", urls)]),
    )


def _seen(resolver, url: str):
    m = resolver.resolve(url)
    return m.func, m.args, m.kwargs, m.url_name, m.route, m.namespaces


def test_every_route_resolves_as_in_the_flat_list():
    flat, grouped = _resolvers()
    routes = [str(p.pattern) for p in api.urls[0]]
    for route in routes:
        url = "/api/v1/" + _VALUE.sub("7", route)
        assert _seen(grouped, url) == _seen(flat, url), route
    # The project's URLconf is the grouped one, and a path no route takes under a known segment
    # still falls through to the API's 404.
    top = get_resolver().url_patterns[0]
    assert str(top.pattern) == "api/v1/" and len(top.url_patterns) < len(routes) / 2
    assert get_resolver().resolve("/api/v1/appointments/7/nothing-here").func is api_not_found
    # A path goes straight to its own segment's routes: the others are not tried.
    arrive = get_resolver().resolve("/api/v1/appointments/7/arrive")
    assert arrive.route == "api/v1/appointments/<pk>/arrive" and len(arrive.tried) < 10


def test_every_name_reverses_as_in_the_flat_list():
    flat, grouped = _resolvers()
    for p in api.urls[0]:
        kwargs = {name: "7" for name in _VALUE.findall(str(p.pattern))}
        results = []
        for resolver in (flat, grouped):
            try:
                results.append(resolver.namespace_dict["api"][1].reverse(p.name, **kwargs))
            except NoReverseMatch as e:
                results.append(type(e))
        assert results[0] == results[1], p.name
