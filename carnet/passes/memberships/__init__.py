"""Memberships (SPEC 6.2, 6.4, 9.7, 15, 16): selling, cycles and the billing job, pause, cancel and
refund, dunning, overdue states, write-off, plan changes, card-update requests, retry now, freeze
fees, tomorrow's charges; their pages and API."""
