from django.urls import include, path

from . import views

app_name = "reports"
urlpatterns = [
    path("reports/", views.report_index, name="index"),
    path("reports/", include("carnet.reports.pass_urls")),
    path("reports/", include("carnet.reports.billing_urls")),
]
