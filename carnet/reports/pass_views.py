"""Pass reports' pages (SPEC 10): pass sales, pass usage, deferred revenue roll-forward."""

# (url name, label, one line about it) for the Reports page
REPORTS: list[tuple[str, str, str]] = []
