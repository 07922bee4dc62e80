"""Breakage in proportion to redemptions (issue 23 point 5, ASC 606-10-55-48), the accountant's
alternative to breakage at expiry.

A package sold while the clinic's breakage method is "proportional" keeps its template's expected
breakage rate r. Each redemption of value v then also recognises v × r / (1 − r) of breakage
(expected breakage is to expected redemptions as r to 1 − r), posted with the redemption:
debit *expected breakage (contra)*, credit breakage revenue. Deferred revenue – packages itself
keeps the unredeemed value, so the expiry, refund and transfer postings are unchanged; the contra
account holds what was recognised ahead. Breakage recognised ahead never exceeds the value still
deferred after the redemption: a patient who uses more than expected takes it back (a negative
share, the catch-up). When the package ends (expires, is refunded or transferred), its part of the
contra account is settled against breakage revenue, so in all the breakage recognised is exactly
the value never redeemed, as at expiry. Un-arriving a visit reverses its redemption's posting,
share included. Balanced double entry throughout.
"""

from __future__ import annotations

from django.db.models import F

from carnet.ledger import accounts
from carnet.ledger.services import Line, transaction_post
from carnet.passes.models import Pass

BASIS = 10000  # basis points in 100 %


def breakage_rate_at_sale(template, clinic) -> int:
    """The rate a package sold now keeps: its template's, when the clinic recognises breakage in
    proportion to redemptions; 0 (breakage at expiry only) otherwise."""
    if clinic.breakage_method == clinic.BreakageMethod.PROPORTIONAL:
        return template.expected_breakage_bp
    return 0


def breakage_share(sold: Pass, *, value: int, left_after: int) -> int:
    """The expected breakage a redemption of `value` recognises (negative: a catch-up), with
    `left_after` the value still deferred once it is posted."""
    rate = sold.breakage_rate_bp
    if not rate or rate >= BASIS:
        return 0
    ahead = sold.breakage_expected_minor
    target = min(ahead + value * rate // (BASIS - rate), max(left_after, 0))
    return target - ahead


def breakage_lines(share: int) -> list[Line]:
    """The lines a redemption's breakage share adds to its journal transaction."""
    if share > 0:
        return [
            Line(accounts.EXPECTED_BREAKAGE, debit=share),
            Line(accounts.BREAKAGE, credit=share),
        ]
    if share < 0:
        return [
            Line(accounts.BREAKAGE, debit=-share),
            Line(accounts.EXPECTED_BREAKAGE, credit=-share),
        ]
    return []


def expected_breakage_settle(sold: Pass, *, memo: str) -> int:
    """A package that ends (its row locked by the caller) gives back the breakage recognised ahead:
    what it never redeemed has just gone to breakage (or back to the patient) in full."""
    ahead = Pass.objects.filter(pk=sold.pk).values_list("breakage_expected_minor", flat=True).get()
    if ahead:
        Pass.objects.filter(pk=sold.pk).update(
            breakage_expected_minor=F("breakage_expected_minor") - ahead
        )
        transaction_post(
            kind="pass_breakage_settled", source=sold, memo=memo, lines=breakage_lines(-ahead)
        )
    return ahead
