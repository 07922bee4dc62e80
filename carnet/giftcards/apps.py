from django.apps import AppConfig


class GiftCardsConfig(AppConfig):
    name = "carnet.giftcards"
    label = "giftcards"

    def ready(self):
        # late: these modules load models, which only exist once the app registry is ready.
        # Loading services registers the card-attempt purposes (loads, online sales, refunds)
        # before any reconciliation runs.
        from carnet.billing.models import Payment
        from carnet.billing.payments import payment_receiver_register
        from carnet.clinic.selectors import money_model_register

        from .models import GiftCard
        from .services import gift_card_redeem

        # The billing tab's "Redeem gift card" payment takes the card's balance (billing.views).
        payment_receiver_register(Payment.Method.GIFT_CARD, gift_card_redeem)
        # A gift card fixes the clinic's currency too (clinic.selectors.money_recorded).
        money_model_register(GiftCard)
