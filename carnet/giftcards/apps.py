from django.apps import AppConfig


class GiftCardsConfig(AppConfig):
    name = "carnet.giftcards"
    label = "giftcards"

    def ready(self):
        # Registers the card-attempt purposes (loads, online sales,
        # refunds) before any reconciliation runs.
        from . import services  # noqa: F401
