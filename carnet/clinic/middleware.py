"""Pages show times in the clinic's time zone (SPEC: times are read in the clinic's zone; the server
and database stay in UTC)."""

from django.utils import timezone

from .selectors import clinic_get


class ClinicTimeZoneMiddleware:
    """Activate the clinic's time zone for each page, so every `{{ some_datetime }}` a person reads
    is in it. Pages for one location still convert with `|timezone:location.time_zone`. The JSON API
    is left alone: it returns instants with their offset, and its statement budget has no room for
    the clinic read."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/api/"):
            return self.get_response(request)
        timezone.activate(clinic_get().time_zone)
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
