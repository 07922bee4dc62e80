from django.urls import include, path

from carnet.staff import checkout_views

from . import views, webhook_views

app_name = "billing"
P = "patients/<int:pk>/billing/"
urlpatterns = [
    path(P, views.billing_tab, name="tab"),
    path(P + "purchase/", checkout_views.purchase_new, name="purchase_new"),
    path(
        P + "purchase/authenticated/<int:attempt_pk>/",
        checkout_views.purchase_authenticated,
        name="purchase_authenticated",
    ),
    path(P + "purchase/totals/", checkout_views.purchase_totals, name="purchase_totals"),
    path(P + "payment/", views.payment_new, name="payment_new"),
    path(
        P + "invoices/<int:invoice_pk>/apply-credit/", views.credit_apply_view, name="credit_apply"
    ),
    path(P + "invoices/<int:invoice_pk>/delete/", views.invoice_delete_view, name="invoice_delete"),
    path(P + "allocations/<int:allocation_pk>/unapply/", views.unapply_view, name="unapply"),
    path(P + "payments/<int:payment_pk>/refund/", views.refund_view, name="refund"),
    path(P + "cards/new/", views.card_new, name="card_new"),
    path(P + "cards/<int:card_pk>/remove/", views.card_remove_view, name="card_remove"),
    path(
        "billing/card-payments/<int:attempt_pk>/authenticated/",
        views.card_authenticated,
        name="card_authenticated",
    ),
    path("billing/card-payments/review/", views.card_attempts_review, name="card_review"),
    path("webhooks/stripe/", webhook_views.stripe_webhook, name="stripe_webhook"),
    path("", include("carnet.billing.document_urls")),
]
