"""Packages and memberships (SPEC 5, 6, 9), one `Pass` model for both, in rooms named after SPEC's
sections:

- `setup/`: templates and their rules (Settings → Packages & Memberships, update sold passes,
  expiry rules and presets, intro offers);
- `redeeming/`: using a pass, the core both kinds share (eligibility and Explain, reserve → post →
  void, the breakage a use recognises, what scheduling asks at each step of a visit, windows and
  caps, online-booking quotes);
- `packages/`: selling and ending packages (online purchase, payment plans, opening balances,
  expiry, refund, transfer);
- `memberships/`: memberships, online sign-up, cycle billing, overdue, write-off, plan changes,
  card requests.

At this root: what both kinds share or Django looks for here (`models`, `locks`, `selectors`,
`invariants`, a membership's `cycles`, `dunning` (declines, retries, the past-due date),
`invoicing` (issuing pass invoices), `charging` (charging due pass invoices: instalments and
cycles), `online` (what selling online shares), `api` (one pass at `/passes/{id}`, read or deleted
whatever its kind), the daily job in `jobs`,
`documents`, `emails`, templates, template tags, migrations, and in `tests/` the factories and the
tests over both kinds). Each room's tests are in its own `tests/`.

The rooms are layers (pyproject.toml's `passes-rooms` contract): memberships and packages,
side by side, build on redeeming, setup and charging, those on the shared modules above, and
everything on the models.
"""
