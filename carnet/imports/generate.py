"""A generated clinic to switch in (for the round-trip test and the import benchmark): patients
(a tenth of them dependants of the one before) and packages of one template, as CSV text."""

from __future__ import annotations

import csv
import datetime as dt
import io


def _csv(header: list[str], rows) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode()


def clinic_files(*, patients: int, passes: int, template_name: str, prefix: str = "G",
                 start: dt.date = dt.date(2025, 1, 1)) -> dict[str, bytes]:
    """{"patients": …, "packages": …, "credit": …, "gift_cards": …} for `patients` people and `passes` packages
    (prices 50.00–149.00 over 3–12 uses, some used; a fifth without a known price), a credit balance for every
    seventh patient and a gift card for every eleventh."""
    people = _csv(["External ID", "First name", "Last name", "Email", "Date of birth", "Guardian external ID"], (
        [f"{prefix}P{n}", f"{prefix}F{n}", f"Last{n % 97}", f"{prefix.lower()}{n}@example.test",
         (dt.date(1950, 1, 1) + dt.timedelta(days=n * 7 % 25000)).isoformat() if n % 3 else "",
         f"{prefix}P{n - 1}" if n % 10 == 9 else ""]
        for n in range(patients)))
    rows = []
    for n in range(passes):
        quantity = 3 + n % 10
        remaining = quantity - n % (quantity + 1)
        price = 5000 + (n * 37 % 100) * 100
        known = n % 5 != 4
        rows.append([f"{prefix}S{n}", f"{prefix}P{n * 7 % patients}", template_name,
                     (start + dt.timedelta(days=n % 300)).isoformat(),
                     f"{price / 100:.2f}" if known else "", str(quantity), str(remaining),
                     "" if known else f"{price * remaining // quantity / 100:.2f}",
                     (start + dt.timedelta(days=400 + n % 300)).isoformat() if n % 4 else ""])
    packages = _csv(["External ID", "Patient external ID", "Package", "Purchase date", "Price", "Quantity",
                     "Remaining uses", "Remaining value", "Expiry date"], rows)
    credit = _csv(["Patient external ID", "Credit"],
                  ([f"{prefix}P{n}", f"{(n % 50) + 1}.25"] for n in range(0, patients, 7)))
    cards = _csv(["Code", "Balance", "Purchaser external ID"],
                 ([f"{prefix}GC{n:06d}", f"{(n % 9 + 1) * 10}.00", f"{prefix}P{n}"] for n in range(0, patients, 11)))
    return {"patients": people, "packages": packages, "credit": credit, "gift_cards": cards}
