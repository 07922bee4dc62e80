from django.urls import path

from . import pass_views

urlpatterns = [  # pass reports (pass_views.py); names are in the "reports" namespace
    path("pass-sales/", pass_views.pass_sales, name="pass_sales"),
    path("pass-usage/", pass_views.pass_usage, name="pass_usage"),
    path("deferred-revenue/", pass_views.pass_rollforward, name="pass_rollforward"),
]
