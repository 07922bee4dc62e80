"""Memberships (SPEC 6.2, 6.4, 9.7, 15, 16): selling and signing up online, the cycle billing job,
pause, cancel and refund, overdue states, write-off, plan changes, card-update requests, retry now,
freeze fees, tomorrow's charges; their pages and API. Their cycles and dunning are at the passes
root (`cycles`, `dunning`): the rooms below count in cycles and record declines too."""
