from django.apps import AppConfig


class GiftCardsConfig(AppConfig):
    name = "carnet.giftcards"
    label = "giftcards"
