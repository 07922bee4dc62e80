"""Forms for the passes pages. Money is typed as an amount (85.00) and stored in minor units."""

from django import forms

from carnet.clinic.forms import SetupFormBase
from carnet.clinic.models import Location, Treatment
from carnet.core.forms import MoneyField
from carnet.core.permissions import Action, can
from carnet.passes.models import MEMBERSHIP_TERMS, PassTemplate

# ---------------------------------------------------------------- Settings → Packages & Memberships

INTRO_LABELS = {
    "new_patients_only": "Intro offer: new patients only (no arrived visit or earlier purchase)",
    "once_per_patient": "Intro offer: once per patient",
}
WINDOW_FIELDS = (
    "allowed_locations",
    "allowed_days",
    "window_start",
    "window_end",
    "cap_uses",
    "cap_period",
)
WINDOW_LABELS = {
    "allowed_locations": "Used only at (none ticked: every location)",
    "allowed_days": "Used only on (none ticked: every day)",
    "window_start": "Used from (location's time)",
    "window_end": "Used until (before the start: past midnight)",
    "cap_uses": "At most this many uses",
    "cap_period": "Per",
}
DAY_CHOICES = [
    (str(n), day)
    for n, day in enumerate(
        ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
    )
]


class DaysField(forms.MultipleChoiceField):
    """Ticked days, stored as the digits "0" (Monday) to "6"."""

    def __init__(self, **kwargs):
        kwargs.pop("max_length", None)
        kwargs.pop("empty_value", None)
        super().__init__(
            choices=DAY_CHOICES, widget=forms.CheckboxSelectMultiple, required=False, **kwargs
        )

    def prepare_value(self, value):
        return list(value) if isinstance(value, str) else value

    def clean(self, value):
        return "".join(sorted(super().clean(value)))


def window_fields(form: forms.ModelForm) -> None:
    """The when-and-where fields of a template form (issue 23): days as boxes,
    times as time inputs."""
    form.fields["allowed_days"] = DaysField(label=WINDOW_LABELS["allowed_days"])
    form.fields["allowed_locations"].widget = forms.CheckboxSelectMultiple()
    form.fields["allowed_locations"].queryset = Location.objects.filter(is_active=True).order_by(
        "name"
    )
    for name in ("window_start", "window_end"):
        form.fields[name].widget = forms.TimeInput(attrs={"type": "time"})
    form.fields["cap_uses"].widget.attrs.update({"min": 1, "class": "short"})
    form.fields["cap_period"].required = False  # empty: per week


ITEM_ROWS = 6  # blank eligible-item rows offered at least (blank rows are ignored)


class TemplateForm(SetupFormBase):
    """A package template's own fields; checked by services.template_save."""

    class Meta:
        model = PassTemplate
        fields = [
            "name",
            "price_minor",
            "tax_inclusive",
            "taxes",
            "income_category",
            "quantity",
            "face_value_minor",
            "expiry_value",
            "expiry_unit",
            "auto_select",
            "redeem_online",
            "family_sharing",
            "transferable",
            "instalments",
            "sold_online",
            "new_patients_only",
            "once_per_patient",
            "expected_breakage_bp",
            *WINDOW_FIELDS,
        ]
        labels = {
            "quantity": "Quantity (uses)",
            "expiry_value": "Expires after",
            "expiry_unit": "Expiry unit",
            "expected_breakage_bp": "Expected breakage rate",
            "auto_select": "Auto-select on eligible bookings",
            "redeem_online": "Redeem on online bookings",
            "family_sharing": "Family members may share it",
            "transferable": "May be transferred",
            "instalments": "Instalments (payment plan)",
            "sold_online": "Sold online in the patient portal",
            **INTRO_LABELS,
            **WINDOW_LABELS,
        }
        help_texts = {
            "expiry_value": "From the purchase date; leave empty for never.",
            "instalments": "1 = paid in full; up to 24.",
            "quantity": "How many visits the package covers (empty when it holds a value).",
            "expected_breakage_bp": (
                "Basis points, 1000 = 10 %: the share of the value the clinic expects never to be "
                "used. Recognised in proportion to redemptions when the clinic's breakage method "
                "says so (Settings → Clinic); packages sold keep the rate of their sale."
            ),
        }

    def __init__(self, *args, currency: str, **kwargs):
        self.currency = currency
        super().__init__(*args, **kwargs)
        self.fields[
            "quantity"
        ].required = False  # required unless it holds a value: setup.services says so
        # Issue 23: a package that holds a value (pay 900.00,
        # get 1,000.00 of treatments) instead of a count.
        self.fields["holds_value"] = forms.BooleanField(
            required=False,
            initial=self.instance.face_value_minor is not None,
            label="Holds a value (not a count)",
            help_text=(
                "Each covered visit draws its price (or the item's value below) from the balance; "
                "when the balance runs short the patient pays the rest."
            ),
        )
        self.fields["face_value_minor"] = MoneyField(
            currency=currency,
            required=False,
            label="Value it holds",
            help_text="The amount of treatments it covers, e.g. 1,000.00 for a price of 900.00.",
        )
        self.order_fields([*self.Meta.fields[:5], "holds_value", "face_value_minor", "quantity"])
        window_fields(self)
        for name in ("quantity", "expiry_value", "instalments", "expected_breakage_bp"):
            self.fields[name].widget.attrs.update({"min": 0, "class": "short"})
        self.fields["expected_breakage_bp"].required = False  # blank: none expected

    def clean_expected_breakage_bp(self):
        return self.cleaned_data.get("expected_breakage_bp") or 0

    def clean(self):
        data = super().clean()
        if not data.get("holds_value"):
            data["face_value_minor"] = None
        elif data.get("face_value_minor") is None and "face_value_minor" not in self.errors:
            self.add_error(
                "face_value_minor", "Give the value it holds, or untick “Holds a value”."
            )
        data.pop("holds_value", None)
        return data


class MembershipTemplateForm(SetupFormBase):
    """A membership template's own fields (SPEC 6.1, 9.7); checked by services.template_save."""

    class Meta:
        model = PassTemplate
        fields = [
            "name",
            "price_minor",
            *MEMBERSHIP_TERMS,
            "tax_inclusive",
            "taxes",
            "income_category",
            "auto_select",
            "redeem_online",
            "sold_online",
            "new_patients_only",
            "once_per_patient",
            *WINDOW_FIELDS,
        ]
        labels = {
            "cycle": "Billing cycle",
            "term_cycles": "Term (cycles)",
            "cancellable_after_cycles": "Cancellable after (cycles)",
            "uses_per_cycle": "Uses per cycle",
            "rollover": "Unused uses roll over to the next cycle",
            "rollover_cap": "Rollover cap (uses)",
            "pause_allowed": "May be paused",
            "pause_max_cycles": "Longest pause (cycles)",
            "freeze_fee_kind": "Freeze fee",
            "self_cancel": "Patients may cancel it themselves",
            "auto_select": "Auto-select on eligible bookings",
            "redeem_online": "Redeem on online bookings",
            "sold_online": "Online sign-up in the patient portal",
            **INTRO_LABELS,
            **WINDOW_LABELS,
        }
        help_texts = {
            "term_cycles": "1 to 52; leave empty for open-ended.",
            "cancellable_after_cycles": (
                "A warning when cancelling earlier, not a block; 0 = any time."
            ),
            "uses_per_cycle": "Leave empty for unlimited.",
            "rollover_cap": "At most this many unused uses carried over; empty = no cap.",
            "pause_max_cycles": "Per pause, when pausing is allowed.",
            "freeze_fee_kind": (
                "Billed like a cycle, on a line of its own, when a paused cycle would have "
                "started (once: the first only); shown to the patient before they pause."
            ),
        }

    def __init__(self, *args, currency: str, **kwargs):
        self.currency = currency
        super().__init__(*args, **kwargs)
        self.fields["price_minor"].label = "Amount per cycle"
        window_fields(self)
        self.fields["cycle"].required = True
        self.fields["freeze_fee_minor"] = MoneyField(
            currency=currency,
            required=False,
            label="Freeze fee amount",
            help_text="Per pause or per frozen cycle, as chosen above.",
        )
        self.fields[
            "freeze_fee_kind"
        ].required = False  # not sent (an older form, a script): no fee
        for name in (
            "term_cycles",
            "cancellable_after_cycles",
            "uses_per_cycle",
            "rollover_cap",
            "pause_max_cycles",
        ):
            self.fields[name].required = False
            self.fields[name].widget.attrs.update({"min": 0, "class": "short"})

    def clean(self):
        data = super().clean()
        for name in (
            "cancellable_after_cycles",
            "pause_max_cycles",
            "freeze_fee_minor",
        ):  # empty = 0 (not null)
            if data.get(name) is None and name not in self.errors:
                data[name] = 0
        if not data.get("freeze_fee_kind") and "freeze_fee_kind" not in self.errors:
            data["freeze_fee_kind"] = "none"
        return data


def template_form(data, template: PassTemplate, *, currency: str):
    """The form for the template's kind (its own fields; the eligible items are
    a separate table)."""
    cls = MembershipTemplateForm if template.kind == PassTemplate.Kind.MEMBERSHIP else TemplateForm
    return cls(data, instance=template, currency=currency)


class EligibleItemForm(forms.Form):
    """One eligible-item row; field names match the service's item keys so its errors land here."""

    treatment = forms.ModelChoiceField(queryset=None, required=False, empty_label="—")
    limit = forms.IntegerField(
        required=False,
        min_value=0,
        label="Per-item limit",
        widget=forms.NumberInput(attrs={"class": "short"}),
    )

    def __init__(self, *args, currency: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["treatment"].queryset = Treatment.objects.order_by("name")
        self.fields["additional_charge_minor"] = MoneyField(
            currency=currency, required=False, label="Additional charge"
        )
        self.fields["compensation_minor"] = MoneyField(
            currency=currency, required=False, label="Staff compensation value"
        )
        self.fields["value_minor"] = MoneyField(
            currency=currency, required=False, label="Value drawn"
        )
        self.order_fields(
            ["treatment", "additional_charge_minor", "compensation_minor", "limit", "value_minor"]
        )

    def is_blank(self) -> bool:
        d = self.cleaned_data
        return not d or all(d.get(k) in (None, "") for k in self.fields)


def item_formset(data, template: PassTemplate | None, *, currency: str):
    """The eligible-items table: the template's items, then blank rows
    (at least ITEM_ROWS in all)."""
    initial = [
        {
            "treatment": i.treatment_id,
            "additional_charge_minor": i.additional_charge_minor,
            "compensation_minor": i.compensation_minor,
            "limit": i.limit,
            "value_minor": i.value_minor,
        }
        for i in (template.items.all() if template and template.pk else [])
    ]
    extra = max(ITEM_ROWS - len(initial), 2)
    FormSet = forms.formset_factory(EligibleItemForm, extra=extra, max_num=100)
    return FormSet(data, initial=initial, prefix="items", form_kwargs={"currency": currency})


def intro_override_add(form: forms.Form, user) -> None:
    """The "sell this intro offer anyway" box, offered only to staff allowed to
    override (issue 23)."""

    if can(user, Action.INTRO_OFFER_OVERRIDE):
        form.fields["intro_override"] = forms.BooleanField(
            required=False,
            label="Sell even if it is an intro offer this patient may not have",
            help_text=(
                "New-patient and once-per-patient offers are otherwise refused; the override is "
                "logged."
            ),
        )


class ConfirmForm(forms.Form):
    """A once-only confirmation (update sold packages / all memberships)."""

    form_key = forms.CharField(widget=forms.HiddenInput)
