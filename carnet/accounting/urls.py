from django.urls import path

from . import views

app_name = "accounting"
urlpatterns = [
    path("accounting/", views.accounting_index, name="index"),
    path("accounting/mapping/", views.account_mapping, name="mapping"),
    path("accounting/exports/<int:pk>/", views.export_detail, name="export"),
    path("accounting/trial-balance/", views.trial_balance_page, name="trial_balance"),
    path("accounting/general-ledger/", views.general_ledger_page, name="general_ledger"),
]
