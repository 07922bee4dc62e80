"""Passes' invariants for `ledger_check` (SPEC 3.5): deferred revenue – packages equals the
unredeemed value of the packages, and every counter equals the rows it counts."""

from django.db.models import Count, F, Q, Sum

from carnet.ledger import accounts
from carnet.ledger.invariants import invariant
from carnet.ledger.selectors import balance

from .models import Kind, Pass, PassInvoice, PassItem, Redemption


def _deferred(kind: str, account: str, what: str):
    rows = (
        Pass.objects.filter(kind=kind)
        .exclude(status=Pass.Status.DELETED)
        .aggregate(deferred=Sum("deferred_minor"), recognised=Sum("recognised_minor"))
    )
    expected = (rows["deferred"] or 0) - (rows["recognised"] or 0)
    in_ledger = balance(account)
    if in_ledger != expected:
        yield f"ledger {in_ledger} != {expected} {what}"
    for sold in Pass.objects.filter(kind=kind, recognised_minor__gt=F("deferred_minor")):
        yield (
            f"pass #{sold.pk}: recognised {sold.recognised_minor} > deferred {sold.deferred_minor}"
        )


@invariant("deferred revenue – packages equals the unredeemed value of packages")
def _deferred_packages():
    yield from _deferred(Kind.PACKAGE, accounts.DEFERRED_PACKAGES, "unredeemed in the packages")


@invariant("deferred revenue – memberships equals the unearned part of issued cycles")
def _deferred_memberships():
    yield from _deferred(
        Kind.MEMBERSHIP, accounts.DEFERRED_MEMBERSHIPS, "unearned in the membership cycles"
    )
    rows = (
        PassInvoice.objects.filter(sold_pass__kind=Kind.MEMBERSHIP)
        .exclude(sold_pass__status=Pass.Status.DELETED)
        .aggregate(
            net=Sum("net_minor", filter=Q(invoice__isnull=False)),
            recognised=Sum("recognised_minor"),
        )
    )
    per_cycle = (rows["net"] or 0) - (rows["recognised"] or 0)
    in_ledger = balance(accounts.DEFERRED_MEMBERSHIPS)
    if in_ledger != per_cycle:
        yield f"ledger {in_ledger} != {per_cycle} unearned summed over the cycles"
    cycles = PassInvoice.objects.annotate(
        live=Count(
            "redemptions",
            filter=Q(
                redemptions__status__in=[Redemption.Status.RESERVED, Redemption.Status.POSTED]
            ),
        )
    )
    for row in (
        cycles.filter(sold_pass__kind=Kind.MEMBERSHIP).exclude(used_count=F("live")).order_by("pk")
    ):
        yield f"membership cycle #{row.pk}: used {row.used_count} != live redemptions {row.live}"


@invariant("pass use counters match their redemptions")
def _pass_counters():
    counted = Pass.objects.annotate(
        reserved=Count("redemptions", filter=Q(redemptions__status=Redemption.Status.RESERVED)),
        posted=Count("redemptions", filter=Q(redemptions__status=Redemption.Status.POSTED)),
    )
    for sold in counted.order_by("pk"):
        if (sold.reserved, sold.posted) != (sold.reserved_count, sold.posted_count):
            yield (
                f"pass #{sold.pk}: counters reserved {sold.reserved_count}/posted "
                f"{sold.posted_count} != redemptions {sold.reserved}/{sold.posted}"
            )
        if sold.remaining is not None and sold.remaining < 0:
            yield f"pass #{sold.pk}: over-redeemed ({sold.remaining} left)"
    items = PassItem.objects.annotate(
        live=Count(
            "redemptions",
            filter=Q(
                redemptions__status__in=[Redemption.Status.RESERVED, Redemption.Status.POSTED]
            ),
        )
    )
    for item in items.order_by("pk"):
        if item.live != item.used_count:
            yield f"pass item #{item.pk}: used {item.used_count} != live redemptions {item.live}"
        if item.limit is not None and item.used_count > item.limit:
            yield f"pass item #{item.pk}: {item.used_count} uses over its limit of {item.limit}"


@invariant("breakage recognised ahead equals the packages' part of the expected-breakage account")
def _expected_breakage():
    """Proportional breakage (packages/breakage.py): the contra account holds what each package
    recognised ahead, and no active package has more recognised ahead than it still holds
    in deferred revenue."""
    ahead = Pass.objects.aggregate(total=Sum("breakage_expected_minor"))["total"] or 0
    in_ledger = balance(accounts.EXPECTED_BREAKAGE)
    if in_ledger != ahead:
        yield f"ledger {in_ledger} != {ahead} recognised ahead by the packages"
    over = Pass.objects.filter(
        status=Pass.Status.ACTIVE,
        breakage_expected_minor__gt=F("deferred_minor") - F("recognised_minor"),
    )
    for sold in over.order_by("pk"):
        yield (
            f"pass #{sold.pk}: breakage recognised ahead {sold.breakage_expected_minor} > still "
            f"deferred {sold.deferred_minor - sold.recognised_minor}"
        )


@invariant("value packages' held and drawn amounts match their redemptions")
def _value_counters():
    """Issue 23: a value package's reserved and posted amounts equal the sums its live redemptions
    hold and drew, and its balance never goes below zero."""

    def amount(status):
        return Sum("redemptions__drawn_minor", filter=Q(redemptions__status=status))

    rows = Pass.objects.filter(face_value_minor__isnull=False).annotate(
        held=amount(Redemption.Status.RESERVED), drawn=amount(Redemption.Status.POSTED)
    )
    for sold in rows.order_by("pk"):
        if (sold.held or 0, sold.drawn or 0) != (
            sold.value_reserved_minor,
            sold.value_posted_minor,
        ):
            yield (
                f"pass #{sold.pk}: value reserved {sold.value_reserved_minor}/drawn "
                f"{sold.value_posted_minor} != redemptions {sold.held or 0}/{sold.drawn or 0}"
            )
        if sold.value_left < 0:
            yield f"pass #{sold.pk}: over-drawn ({sold.value_left} left)"
