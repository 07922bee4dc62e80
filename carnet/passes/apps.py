from django.apps import AppConfig


class PassesConfig(AppConfig):
    name = "carnet.passes"
    label = "passes"

    def ready(self):
        # late: these modules load models, which only exist once the app registry is ready.
        # Loading charging and online registers the card-attempt purposes (charging pass
        # invoices, online purchases) before any reconciliation runs.
        from carnet.billing.documents import receipt_pass_parts_register
        from carnet.scheduling import coverage

        from . import charging  # noqa: F401
        from .documents import coverage_for_invoice, sale_terms_for_invoice
        from .dunning import membership_steps_register
        from .memberships.card_requests import card_update_request
        from .memberships.writeoff import cycle_write_off
        from .packages import online  # noqa: F401
        from .redeeming import visits

        # Scheduling asks passes what covers a visit through scheduling.coverage.
        coverage.register(visits)
        # A receipt names the package covering its visit and a sale's terms (billing.documents).
        receipt_pass_parts_register(
            coverage=coverage_for_invoice, sale_terms=sale_terms_for_invoice
        )
        # A declined membership cycle asks memberships for a new card or a write-off (dunning).
        membership_steps_register(
            card_update_request=card_update_request, cycle_write_off=cycle_write_off
        )
