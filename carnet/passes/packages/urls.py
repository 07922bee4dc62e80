"""Staff pages for sold passes: the patient's Packages & Memberships list, selling, one pass."""

from django.urls import path

from . import views

app_name = "passes"
P = "passes/<int:pk>/"
urlpatterns = [
    path("patients/<int:pk>/passes/", views.patient_passes, name="patient_passes"),
    path("patients/<int:pk>/passes/sell/", views.pass_sell, name="sell"),
    path(P, views.pass_detail, name="detail"),
    path(P + "expiry/", views.pass_expiry, name="expiry"),
    path(P + "refund/", views.pass_refund, name="refund"),
    path(P + "transfer/", views.pass_transfer, name="transfer"),
    path(P + "sharing/", views.pass_shares, name="shares"),
    path(P + "delete/", views.pass_delete, name="delete"),
]
