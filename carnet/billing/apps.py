from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "carnet.billing"
    label = "billing"

    def ready(self):
        from . import card_attempts  # noqa: F401  (billing's own card-attempt purposes)
