"""Gift-card codes as typed and as stored (SPEC 7): one spelling per code, and the rules it must
meet. Shared by the services (create, redeem) and the selectors (search), so that what a patient
reads off a card, full-width or with an invisible character pasted in, finds the same card."""

from __future__ import annotations

import unicodedata


def code_canonical(code: str | None) -> str:
    """One spelling per code: Unicode NFKC (full-width "ＡＢＣ１２３" is "ABC123"), without
    invisible format characters (zero-width space and joiners, BOM, soft hyphen), upper-case."""
    code = unicodedata.normalize("NFKC", code or "")
    return "".join(c for c in code if unicodedata.category(c) != "Cf").strip().upper()


def code_rule_broken(code: str) -> str | None:
    """The one SPEC 7 rule the code breaks, as the sentence to show, or None."""
    if len(code) < 6:
        return "A gift card code needs at least 6 characters."
    if len(code) > 40:
        return "A gift card code has at most 40 characters."
    if any(c.isspace() for c in code):
        return "A gift card code cannot contain spaces."
    if code.startswith("0"):
        return "A gift card code cannot start with 0."
    if any(unicodedata.category(c).startswith("C") for c in code):
        return "A gift card code cannot contain control characters."
    return None
