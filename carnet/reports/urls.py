from django.urls import include, path

from . import past_due, views

app_name = "reports"
urlpatterns = [
    path("reports/", views.report_index, name="index"),
    path("reports/", include("carnet.reports.pass_urls")),
    path("reports/", include("carnet.reports.billing_urls")),
    path("reports/past-due/", past_due.past_due, name="past_due"),  # issue 22
]
