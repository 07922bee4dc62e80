"""The gift card's email: its code, to the recipient (queued; leaves only after commit)."""

from carnet.clinic.selectors import clinic_get
from carnet.core.mail import mail_queue


def giftcard_code_email(*, card) -> None:
    clinic = clinic_get()
    mail_queue(
        to=card.recipient_email,
        subject=f"Your gift card from {clinic.name}",
        template="giftcards/email/code.txt",
        context={"card": card, "clinic": clinic, "amount": clinic.money(card.balance_minor)},
    )
