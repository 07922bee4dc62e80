"""API paths renamed for issue 24 (one word per concept) keep answering at their old address for
one release, as the changelog says: a 308 Permanent Redirect to the new path. A 308 keeps the
method and the body, so a client that follows it sends the same POST again to the new path (with
the same Idempotency-Key: core.middleware stores no redirect under a key)."""

from django.http import HttpResponse


def moved(request, old: str, new: str) -> HttpResponse:
    """308 to this request's address with its last segment `old` replaced by `new` (the query
    string kept)."""
    assert request.path.endswith(old), (request.path, old)
    location = request.path[: -len(old)] + new
    query = request.META.get("QUERY_STRING", "")
    response = HttpResponse(status=308)
    response["Location"] = f"{location}?{query}" if query else location
    return response
