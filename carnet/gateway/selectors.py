from django.db.models import QuerySet

from carnet.core.errors import NotFound
from carnet.people.models import Patient

from .models import CardOnFile


def cards_for_patient(patient: Patient) -> QuerySet[CardOnFile]:
    """The patient's cards still on file, newest first."""
    return CardOnFile.objects.filter(patient=patient, removed_at__isnull=True)


def card_get(pk: int) -> CardOnFile:
    card = CardOnFile.objects.select_related("patient").filter(pk=pk).first()
    if card is None:
        raise NotFound(f"No card on file with id {pk}.")
    return card
