"""Staff pages for memberships: selling from the patient's Billing tab, and one membership."""

from django.urls import path

from . import plan_change_views, views

app_name = "memberships"
M = "memberships/<int:pk>/"
urlpatterns = [
    path("patients/<int:pk>/memberships/sell/", views.membership_sell, name="sell"),
    path(M, views.membership_detail, name="detail"),
    path(M + "pause/", views.membership_pause, name="pause"),
    path(M + "resume/", views.membership_resume, name="resume"),
    path(M + "cancel/", views.membership_cancel, name="cancel"),
    path(M + "payment/", views.membership_payment, name="payment"),
    path(M + "card-request/", views.membership_card_request, name="card_request"),
    path(M + "delete/", views.membership_delete, name="delete"),
    path(M + "plan/", plan_change_views.membership_plan_change, name="plan_change"),
    path(M + "plan/cancel/", plan_change_views.plan_change_cancel, name="plan_change_cancel"),
    path("memberships/cycles/<int:cycle_pk>/refund/", views.cycle_refund, name="cycle_refund"),
    # issue 22: dunning
    path(M + "past-due-override/", views.membership_past_due_override, name="past_due_override"),
    path(M + "retry-now/", views.membership_retry_now, name="retry_now"),
    path(
        "memberships/cycles/<int:cycle_pk>/write-off/",
        views.cycle_write_off,
        name="cycle_write_off",
    ),
    path("memberships/charges/tomorrow/", views.charges_preview, name="charges_preview"),
]
