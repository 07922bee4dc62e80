from django import forms

from carnet.core.forms import MoneyField

from .models import Clinic, Discipline, IncomeCategory, Location, Product, Tax, Treatment
from .selectors import clinic_get

_FIELDS = {
    Location: ["name", "time_zone", "address", "phone", "is_active"],
    Discipline: ["name"],
    IncomeCategory: ["name"],
    Tax: ["name", "rate", "registration_number"],
    Treatment: [
        "name",
        "discipline",
        "kind",
        "duration_minutes",
        "price_minor",
        "tax_inclusive",
        "taxes",
        "income_category",
        "online_bookable",
        "capacity",
        "is_active",
    ],
    Product: [
        "name",
        "sku",
        "price_minor",
        "tax_inclusive",
        "taxes",
        "income_category",
        "stock",
        "is_active",
    ],
    Clinic: [
        "name",
        "currency",
        "time_zone",
        "locale",
        "address",
        "email",
        "phone",
        "invoice_prefix",
        "no_show_fee_minor",
        "allow_double_booking",
        "cancellation_window_hours",
        "online_bookings_per_patient",
        "two_factor_all_staff",
        "online_sales_enabled",
        "gift_cards_enabled",
        "gift_card_load_limit_minor",
        "gift_card_online_sales_enabled",
        "gift_card_online_minimum_minor",
        "pass_expiry_preset",
        "pass_expiry_rule",
        "pass_expiry_minimum_days",
        "pass_expiry_reminder_days",
        "insurer_ready_receipts",
        "breakage_method",
        "membership_proration",
        "dunning_retry_days",
        "dunning_write_off",
        "past_due_suspend_days",
        "past_due_end_days",
        "past_due_end_action",
        "charges_preview_email",
    ],
}
_MONEY_LABELS = {
    "price_minor": "Price",
    "no_show_fee_minor": "No-show fee",
    "gift_card_load_limit_minor": "Gift card load limit",
    "gift_card_online_minimum_minor": "Minimum gift card sold online",
}


class SetupFormBase(forms.ModelForm):
    currency = "CAD"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in list(self.fields):
            if name in _MONEY_LABELS:
                self.fields[name] = MoneyField(
                    currency=self.currency,
                    label=_MONEY_LABELS[name],
                    required=name == "price_minor",
                )
        if "time_zone" in self.fields:
            self.fields["time_zone"].widget = forms.TextInput(attrs={"list": "time-zones"})
        if "taxes" in self.fields:
            self.fields["taxes"].widget = forms.CheckboxSelectMultiple()
            self.fields["taxes"].queryset = Tax.objects.all()

    def _post_clean(self):
        # The service validates the model; the form only converts input.
        pass


def form_for(model):
    """A ModelForm for a set-up object, with money fields typed as amounts."""
    form = forms.modelform_factory(model, form=SetupFormBase, fields=_FIELDS[model])
    form.currency = clinic_get().currency
    return form
