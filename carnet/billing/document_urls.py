"""Receipts, statements and the Pay Balance request (documents.py, emails.py, document_views.py)."""

from django.urls import path

from . import document_views as views

urlpatterns = [
    path("invoices/<int:pk>/receipt/", views.receipt, name="receipt"),
    path("invoices/<int:pk>/receipt.pdf", views.receipt_pdf, name="receipt_pdf"),
    path("invoices/<int:pk>/receipt/email/", views.receipt_email, name="receipt_email"),
    path("patients/<int:pk>/statement/", views.statement, name="statement"),
    path("patients/<int:pk>/statement.pdf", views.statement_pdf, name="statement_pdf"),
    path(
        "patients/<int:pk>/pay-balance-request/",
        views.pay_balance_request,
        name="pay_balance_request",
    ),
]
