from django.urls import path

from . import billing_views as views

urlpatterns = [  # included under reports/ in the "reports" namespace
    path("billing/compensation/", views.compensation, name="billing_compensation"),
    path("billing/transactions/", views.transactions, name="billing_transactions"),
    path("billing/ar-aging/", views.ar_aging, name="billing_ar_aging"),
    path("billing/summary/", views.billing_summary, name="billing_summary"),
]
