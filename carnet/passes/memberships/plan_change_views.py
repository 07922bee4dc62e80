"""The staff page to change a member's plan (issue 22 point 6): choose the new plan and when, see
the preview (credit, charge, uses carried or reset), confirm. The confirmation carries the numbers
shown, so the change refuses if they moved meanwhile; an automatic membership's card is charged
for what is due after the change has committed (never inside its transaction)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from carnet.clinic.selectors import clinic_get
from carnet.core.errors import CarnetError, NotAllowed
from carnet.core.idempotency import new_form_key
from carnet.core.pages import apply_errors, not_allowed, run_action, save_once, staff_required
from carnet.core.permissions import Action
from carnet.passes.models import Pass, PassTemplate

from . import plan_change as pc
from .forms import template_label
from .views import charge_due_message, has_charge_due, membership_for_page


class PlanChangeForm(forms.Form):
    form_key = forms.CharField(widget=forms.HiddenInput)
    template = forms.ModelChoiceField(
        queryset=None, label="New plan", empty_label="Choose a membership"
    )
    when = forms.ChoiceField(
        label="When",
        widget=forms.RadioSelect,
        initial="now",
        choices=[
            ("now", "At once (prorated as the clinic's settings say)"),
            ("next_cycle", "At the next cycle (the current cycle is not changed)"),
        ],
    )
    expected_credit = forms.IntegerField(required=False, widget=forms.HiddenInput)
    expected_charge = forms.IntegerField(required=False, widget=forms.HiddenInput)
    expected_effective = forms.DateField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args, sold: Pass, clinic, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["template"]
        # The current plan stays a choice: the service says why it is refused,
        # and a repeated submit finds its key.
        field.queryset = PassTemplate.objects.filter(
            kind=PassTemplate.Kind.MEMBERSHIP, archived=False
        )
        field.label_from_instance = template_label(clinic)


@staff_required(Action.SELL)
def membership_plan_change(request, pk: int):
    sold, clinic = membership_for_page(pk), clinic_get()
    form = PlanChangeForm(
        request.POST or None,
        sold=sold,
        clinic=clinic,
        initial={"form_key": new_form_key(), "when": "now"},
    )
    preview = None
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        if "confirm" in request.POST:
            expected = {
                "credit_minor": d["expected_credit"],
                "charge_minor": d["expected_charge"],
                "effective_on": d["expected_effective"],
            }
            outcome, result = save_once(
                request,
                form,
                lambda: pc.membership_plan_change(
                    actor=request.user,
                    sold_pass=sold,
                    template=d["template"],
                    when=d["when"],
                    expected={k: v for k, v in expected.items() if v is not None},
                ),
            )
            if outcome == "denied":
                return result
            if outcome == "repeat":
                return redirect("memberships:detail", pk=pk)
            if outcome == "ok":
                if result.status == result.Status.SCHEDULED:
                    messages.success(
                        request,
                        f"{sold.name} changes to {result.to_name} on "
                        f"{result.effective_on:%Y-%m-%d}, when its next cycle starts.",
                    )
                else:
                    messages.success(request, f"{sold.name} is now {result.to_name}.")
                fresh = Pass.objects.select_related("card").get(pk=pk)
                if fresh.payment_mode == Pass.PaymentMode.AUTOMATIC and has_charge_due(fresh):
                    level, text = charge_due_message(fresh, clinic)
                    getattr(messages, level)(request, text)
                return redirect("memberships:detail", pk=pk)
            # "error": the service's reason is on the form; a fresh preview follows below.
        try:
            preview = pc.plan_change_preview(
                actor=request.user, sold_pass=sold, template=d["template"], when=d["when"]
            )
        except NotAllowed as exc:
            return not_allowed(request, exc.message)
        except CarnetError as exc:
            apply_errors(form, exc)
    return render(
        request,
        "passes/membership_plan_change.html",
        {
            "sold": sold,
            "clinic": clinic,
            "form": form,
            "preview": preview,
            "form_key": new_form_key(),
            "lines": pc.preview_lines(preview, clinic.money) if preview else [],
            "scheduled": sold.plan_changes.filter(status="scheduled").first(),
        },
    )


@require_POST
@staff_required(Action.SELL)
def plan_change_cancel(request, pk: int):
    sold = membership_for_page(pk)
    _, denied = run_action(
        request,
        lambda: pc.plan_change_cancel(actor=request.user, sold_pass=sold),
        success="The scheduled plan change is cancelled.",
    )
    return denied or redirect("memberships:detail", pk=pk)
