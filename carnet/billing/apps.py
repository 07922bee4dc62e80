from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "carnet.billing"
    label = "billing"
