from django.urls import include, path

from .api import api

urlpatterns = [
    path("api/v1/", api.urls),
    path("", include("carnet.staff.urls")),
    path("", include("carnet.clinic.urls")),
    path("", include("carnet.people.urls")),
    path("portal/", include("carnet.portal.urls")),
]
