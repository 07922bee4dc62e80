"""What may cover a visit: passes (packages and memberships).

Passes build on scheduling (a use belongs to a visit), so scheduling never imports them: passes
registers its answers here when it loads (`passes.apps`), and scheduling asks through `passes`,
e.g. `passes.after_booking(...)`. What scheduling may ask is listed in ASKS; registering checks
that every one is answered, so a missing answer fails at start-up, not in a request.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

ASKS = {
    # A visit's life (book, arrive, no-show, cancel, reschedule, copy).
    "AUTO": "the pass choice that means auto-select (SPEC 5.3)",
    "after_booking": "attach passes to a new booking: auto-selected, the one chosen, or none",
    "reservation": "the use a pass reserved for a visit, if any",
    "line_for": "a visit's invoice line, covered if a use is reserved",
    "billed": "the visit was billed: post its reserved use",
    "unbilled": "the visit's bill was taken back: its used session is reserved again",
    "voided": "the visits are cancelled or removed: void their reserved uses",
    "check_move": "refuse a reschedule the covering pass cannot follow, with the reason",
    "carry_over": "a copied appointment keeps the source's pass while it is still valid",
    # The desk's pages and the API.
    "Pass": "the sold pass model (a pass chosen by id)",
    "visit_quote": "a visit's price and the pass auto-select would use",
    "price_with_tax_minor": "a treatment's price with its taxes",
    "visit_redemption": "the live use covering a visit, if any",
    "pass_attach": "cover a visit with a pass (reserve a use)",
    "pass_remove": "take the pass off a visit (void its use)",
    "explain": "each of the patient's passes with why it can or cannot cover a visit",
    "UNPAID_WARNING": "the warning shown while a membership's cycle is unpaid (SPEC 6.3)",
    "with_cover": "annotate appointments with `covered`: some visit has a live use",
}


class _Passes:
    """Forwards each of ASKS to what passes registered."""

    def __init__(self):
        self._answers = None

    def register(self, answers) -> None:
        missing = sorted(name for name in ASKS if not hasattr(answers, name))
        if missing:
            raise ImproperlyConfigured(f"passes does not answer: {', '.join(missing)}")
        self._answers = answers

    def __getattr__(self, name: str):
        if name not in ASKS:
            raise AttributeError(f"scheduling does not ask passes for {name!r} (see ASKS)")
        if self._answers is None:
            raise ImproperlyConfigured("passes has not registered (carnet.passes.apps)")
        return getattr(self._answers, name)


passes = _Passes()
register = passes.register
