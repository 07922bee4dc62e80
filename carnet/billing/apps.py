from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "carnet.billing"
    label = "billing"

    def ready(self):
        # late: these modules load models, which only exist once the app registry is ready
        from carnet.clinic.selectors import money_model_register

        from . import card_attempts  # noqa: F401  (billing's own card-attempt purposes)
        from .models import Invoice, Payment

        # An invoice or a payment fixes the clinic's currency (clinic.selectors.money_recorded).
        money_model_register(Invoice, Payment)
