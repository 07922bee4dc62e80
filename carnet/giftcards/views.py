"""Staff pages: the gift-card list and search, a card's page with its history and
actions, a new card."""

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from carnet.clinic.selectors import clinic_get
from carnet.core.errors import CarnetError, NotAllowed
from carnet.core.idempotency import new_form_key
from carnet.core.pages import not_allowed, save_once, staff_required
from carnet.core.permissions import Action

from . import services
from .forms import GiftCardForm, NotesForm, RefundForm, ReloadForm, TransferForm
from .selectors import gift_card_by_pk, gift_cards_search


@staff_required(Action.SELL)
def gift_card_list(request):
    q = request.GET.get("q", "")
    return render(
        request,
        "giftcards/list.html",
        {"gift_cards": gift_cards_search(q)[:200], "q": q, "clinic": clinic_get()},
    )


@staff_required(Action.SELL)
def gift_card_new(request):
    clinic = clinic_get()
    form = GiftCardForm(
        request.POST or None, currency=clinic.currency, initial={"form_key": new_form_key()}
    )
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        outcome, result = save_once(
            request,
            form,
            lambda: services.gift_card_create_and_load(
                actor=request.user,
                code=d["code"],
                amount_minor=d["amount"] or 0,
                purchaser=d["purchaser"],
                method=d["method"],
                reference=d["reference"],
                recipient_name=d["recipient_name"],
                recipient_email=d["recipient_email"],
                notes=d["notes"],
                idempotency_key=f"form-{d['form_key']}",
            ),
            calls_gateway=d["method"] == "card_gateway",
        )
        if outcome == "denied":
            return result
        if outcome == "ok":
            messages.success(
                request, f"{result} created with {clinic.money(result.balance_minor)}."
            )
            return redirect("giftcards:detail", pk=result.pk)
        if outcome == "repeat":
            return redirect("giftcards:list")
    return render(request, "giftcards/new.html", {"form": form, "clinic": clinic})


def _forms(clinic, data=None, which=None):
    key = {"form_key": new_form_key()}
    forms = {
        "reload": ReloadForm(currency=clinic.currency, initial=key),
        "transfer": TransferForm(currency=clinic.currency, initial=key),
        "refund": RefundForm(currency=clinic.currency, initial=key),
    }
    if which:
        forms[which] = type(forms[which])(data, currency=clinic.currency)
    return forms


def _detail(request, gift_card, forms=None, status=200):
    clinic = clinic_get()
    return render(
        request,
        "giftcards/detail.html",
        {
            "gift_card": gift_card,
            "clinic": clinic,
            "history": gift_card.transactions.select_related(
                "payment", "invoice", "other_gift_card"
            ),
            "notes_form": NotesForm(initial={"notes": gift_card.notes}),
            **(forms or _forms(clinic)),
        },
        status=status,
    )


@staff_required(Action.SELL)
def gift_card_detail(request, pk: int):
    return _detail(request, gift_card_by_pk(pk))


def _act(request, pk: int, which: str, write, success, *, calls_gateway=lambda data: False):
    """A money-moving form on the card page: run it once, or show the page again with its errors."""
    gift_card = gift_card_by_pk(pk)
    clinic = clinic_get()
    forms = _forms(clinic, request.POST, which)
    form = forms[which]
    if form.is_valid():
        outcome, result = save_once(
            request,
            form,
            lambda: write(gift_card, form.cleaned_data),
            calls_gateway=calls_gateway(form.cleaned_data),
        )
        if outcome == "denied":
            return result
        if outcome in ("ok", "repeat"):
            if outcome == "ok":
                messages.success(request, success(form.cleaned_data, clinic))
            return redirect("giftcards:detail", pk=pk)
    return _detail(request, gift_card_by_pk(pk), forms)


@require_POST
@staff_required(Action.SELL)
def gift_card_reload(request, pk: int):
    return _act(
        request,
        pk,
        "reload",
        lambda gift_card, d: services.gift_card_reload(
            actor=request.user,
            gift_card=gift_card,
            amount_minor=d["amount"],
            payer=d["payer"],
            method=d["method"],
            idempotency_key=f"form-{d['form_key']}",
        ),
        lambda d, c: f"Reloaded {c.money(d['amount'])}.",
        calls_gateway=lambda d: d["method"] == "card_gateway",
    )


@require_POST
@staff_required(Action.SELL)
def gift_card_transfer(request, pk: int):
    return _act(
        request,
        pk,
        "transfer",
        lambda gift_card, d: services.gift_card_transfer(
            actor=request.user,
            source=gift_card,
            target=services.gift_card_get(code=d["target_code"]),
            amount_minor=d["amount"],
        ),
        lambda d, c: f"Transferred {c.money(d['amount'])} to {d['target_code'].upper()}.",
    )


@require_POST
@staff_required(Action.REFUND)
def gift_card_refund(request, pk: int):
    return _act(
        request,
        pk,
        "refund",
        lambda gift_card, d: services.gift_card_refund(
            actor=request.user,
            gift_card=gift_card,
            amount_minor=d["amount"],
            reason=d["reason"],
            idempotency_key=f"form-{d['form_key']}",
        ),
        lambda d, c: f"Refunded {c.money(d['amount'])}.",
        calls_gateway=lambda d: True,
    )  # loads paid by card are refunded through the gateway


@require_POST
@staff_required(Action.SELL)
def gift_card_delete(request, pk: int):
    gift_card = gift_card_by_pk(pk)
    try:
        services.gift_card_delete(actor=request.user, gift_card=gift_card)
    except NotAllowed as exc:
        return not_allowed(request, exc.message)
    except CarnetError as exc:
        messages.error(request, exc.message)
        return redirect("giftcards:detail", pk=pk)
    messages.success(request, f"{gift_card} deleted.")
    return redirect("giftcards:list")


@require_POST
@staff_required(Action.SELL)
def gift_card_notes(request, pk: int):
    gift_card = gift_card_by_pk(pk)
    form = NotesForm(request.POST)
    if form.is_valid():
        services.gift_card_update(
            actor=request.user, gift_card=gift_card, notes=form.cleaned_data["notes"]
        )
        messages.success(request, "Notes saved.")
    return redirect("giftcards:detail", pk=pk)
