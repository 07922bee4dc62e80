"""The gift card's email: its code, to the recipient (queued; leaves only after commit)."""

from carnet.clinic.selectors import clinic_get
from carnet.core.mail import mail_queue


def gift_card_code_email(*, gift_card) -> None:
    clinic = clinic_get()
    mail_queue(
        to=gift_card.recipient_email,
        subject=f"Your gift card from {clinic.name}",
        template="giftcards/email/code.txt",
        context={
            "gift_card": gift_card,
            "clinic": clinic,
            "amount": clinic.money(gift_card.balance_minor),
        },
    )
