from django.apps import AppConfig
from django.db import connections
from django.db.models.signals import post_migrate


def _counter_kept(sender, using, **kwargs):
    """The invoice counter's row, which a one-line invoice takes its number from without checking
    (invoicing._one_line_inserted), made again after a flush (tests), as its migration made it."""
    # late: models exist once the app registry is ready
    from .models import InvoiceCounter

    if InvoiceCounter._meta.db_table in connections[using].introspection.table_names():
        InvoiceCounter.objects.using(using).get_or_create(pk=1)


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
        post_migrate.connect(_counter_kept, sender=self)
