"""Billing reports' pages (SPEC 10): compensation, transactions, A/R aging, billing summary."""

# (url name, label, one line about it) for the Reports page
REPORTS: list[tuple[str, str, str]] = []
