from django.apps import AppConfig


class AccountingConfig(AppConfig):
    name = "carnet.accounting"
    label = "accounting"
