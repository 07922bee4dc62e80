"""Forms for the staff membership pages: sell, change the card or mode, pause,
cancel, refund a cycle."""

from django import forms

from carnet.clinic.models import Location
from carnet.core.forms import DayField, MoneyField
from carnet.gateway.selectors import cards_for_patient
from carnet.passes.models import Pass, PassTemplate
from carnet.passes.setup.forms import intro_override_add
from carnet.people.models import StaffMember

DATE = forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
MODE_CHOICES = [
    (Pass.PaymentMode.MANUAL, "Manual (the desk takes each cycle's payment)"),
    (Pass.PaymentMode.AUTOMATIC, "Automatic (charge a card on file each cycle)"),
]


def template_label(clinic):
    def label(t: PassTemplate) -> str:
        uses = f"{t.uses_per_cycle} uses" if t.uses_per_cycle is not None else "unlimited uses"
        term = f"{t.term_cycles} cycles" if t.term_cycles else "open-ended"
        return (
            f"{t.name} — {clinic.money(t.price_minor)} {t.get_cycle_display().lower()}, "
            f"{uses} per cycle, {term}"
        )

    return label


class _CardMixin:
    """A payment mode and a select of the patient's cards on file (automatic needs one:
    the service says so)."""

    def _card_fields(self, patient):
        self.fields["payment_mode"] = forms.ChoiceField(
            choices=MODE_CHOICES,
            widget=forms.RadioSelect,
            initial=Pass.PaymentMode.MANUAL,
            label="Payment",
        )
        card = forms.ModelChoiceField(
            queryset=cards_for_patient(patient),
            required=False,
            label="Card on file",
            empty_label="No card",
            help_text="Used for automatic payment. Account credit cannot pay automatic cycles.",
        )
        self.fields["card"] = card


class MembershipSellForm(_CardMixin, forms.Form):
    form_key = forms.CharField(widget=forms.HiddenInput)
    template = forms.ModelChoiceField(
        queryset=None, label="Membership", empty_label="Choose a membership"
    )
    start_date = DayField(
        label="Start date",
        widget=DATE,
        help_text="Today, later or in the past (up to a year ago). Cycles that started "
        "before today are invoiced at once and paid by hand; automatic payment "
        "charges only the current cycle.",
    )
    location = forms.ModelChoiceField(
        queryset=Location.objects.filter(is_active=True),
        required=False,
        label="Location",
        empty_label="No location",
    )
    sold_by = forms.ModelChoiceField(
        queryset=None, required=False, label="Sold by (upfront compensation)", empty_label="No one"
    )

    def __init__(self, *args, clinic, patient, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        intro_override_add(self, user)
        field = self.fields["template"]
        field.queryset = PassTemplate.objects.filter(
            kind=PassTemplate.Kind.MEMBERSHIP, archived=False
        )
        field.label_from_instance = template_label(clinic)
        self.fields["sold_by"].queryset = StaffMember.objects.filter(is_active=True).order_by(
            "display_name"
        )
        self._card_fields(patient)
        self.order_fields(
            [
                "form_key",
                "template",
                "start_date",
                "location",
                "payment_mode",
                "card",
                "sold_by",
                "intro_override",
            ]
        )


class PaymentForm(_CardMixin, forms.Form):
    def __init__(self, *args, patient, **kwargs):
        super().__init__(*args, **kwargs)
        self._card_fields(patient)


class PauseForm(forms.Form):
    cycles = forms.TypedChoiceField(coerce=int, label="Pause for")

    def __init__(self, *args, most: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["cycles"].choices = [
            (n, f"{n} cycle{'s' if n > 1 else ''}") for n in range(1, max(most, 1) + 1)
        ]


class CancelForm(forms.Form):
    form_key = forms.CharField(widget=forms.HiddenInput)
    when = forms.ChoiceField(
        label="When",
        widget=forms.RadioSelect,
        initial="cycle_end",
        choices=[
            ("cycle_end", "At the end of the current cycle (benefits last until then)"),
            ("now", "At once (benefits end today)"),
        ],
    )


class CycleRefundForm(forms.Form):
    form_key = forms.CharField(widget=forms.HiddenInput)
    reason = forms.CharField(required=False, max_length=200)

    def __init__(self, *args, currency: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["amount"] = MoneyField(
            currency=currency,
            label="Amount to refund",
            help_text="From 0 to what was collected for this cycle; it becomes the "
            "patient's credit.",
        )
        self.order_fields(["form_key", "amount", "reason"])
