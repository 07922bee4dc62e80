"""Sold packages (SPEC 5.2, 5.4, 5.5, 9.1–9.6, 9.11–9.12, 15, 16 value packages and breakage):
selling, online purchase, payment plans (their charges: passes/charging.py), opening
balances, expiry, refund, delete, transfer and sharing; their pages and API. The breakage a use
recognises is redeeming's (`redeeming/breakage.py`)."""
