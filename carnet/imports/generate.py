"""A generated clinic to switch in (for the round-trip test and the import benchmark): patients
(a tenth of them dependants of the one before), packages of one template (some partly paid) and,
given a membership template, memberships mid-term, as CSV text."""

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


def clinic_files(
    *,
    patients: int,
    passes: int,
    template_name: str,
    prefix: str = "G",
    start: dt.date = dt.date(2025, 1, 1),
    membership_name: str = "",
    cut_over: dt.date = dt.date(2026, 5, 1),
) -> dict[str, bytes]:
    """{"patients": …, "packages": …, "credit": …, "gift_cards": …} for `patients` people and
    `passes` packages (prices 50.00–149.00 over 3–12 uses, some used; a fifth without a known price,
    a thirteenth of the rest half paid), a credit balance for every seventh patient and a gift card
    for every eleventh; with `membership_name` (a monthly template), "memberships":
    one for every ninth patient,
    mid-cycle at `cut_over`."""
    files = {
        "patients": _patients(patients, prefix),
        "packages": _packages(patients, passes, template_name, prefix, start),
        "credit": _csv(
            ["Patient external ID", "Credit"],
            ([f"{prefix}P{n}", f"{(n % 50) + 1}.25"] for n in range(0, patients, 7)),
        ),
        "gift_cards": _csv(
            ["Code", "Balance", "Purchaser external ID"],
            (
                [f"{prefix}GC{n:06d}", f"{(n % 9 + 1) * 10}.00", f"{prefix}P{n}"]
                for n in range(0, patients, 11)
            ),
        ),
    }
    if membership_name:
        files["memberships"] = _memberships(patients, membership_name, prefix, cut_over)
    return files


def _patients(patients: int, prefix: str) -> bytes:
    """A tenth of them dependants of the one before; a third without a date of birth."""
    return _csv(
        [
            "External ID",
            "First name",
            "Last name",
            "Email",
            "Date of birth",
            "Guardian external ID",
        ],
        (
            [
                f"{prefix}P{n}",
                f"{prefix}F{n}",
                f"Last{n % 97}",
                f"{prefix.lower()}{n}@example.test",
                (dt.date(1950, 1, 1) + dt.timedelta(days=n * 7 % 25000)).isoformat()
                if n % 3
                else "",
                f"{prefix}P{n - 1}" if n % 10 == 9 else "",
            ]
            for n in range(patients)
        ),
    )


def _packages(patients: int, passes: int, template_name: str, prefix: str, start) -> bytes:
    """Prices 50.00–149.00 over 3–12 uses, some used; a fifth without a known price, a thirteenth
    of the rest half paid."""
    rows = []
    for n in range(passes):
        quantity = 3 + n % 10
        remaining = quantity - n % (quantity + 1)
        price = 5000 + (n * 37 % 100) * 100
        known = n % 5 != 4
        paid = price // 2 if known and n % 13 == 0 else price
        rows.append(
            [
                f"{prefix}S{n}",
                f"{prefix}P{n * 7 % patients}",
                template_name,
                (start + dt.timedelta(days=n % 300)).isoformat(),
                f"{price / 100:.2f}" if known else "",
                f"{paid / 100:.2f}" if known else "",
                str(quantity),
                str(remaining),
                "" if known else f"{price * remaining // quantity / 100:.2f}",
                (start + dt.timedelta(days=400 + n % 300)).isoformat() if n % 4 else "",
            ]
        )
    return _csv(
        [
            "External ID",
            "Patient external ID",
            "Package",
            "Purchase date",
            "Price",
            "Amount paid",
            "Quantity",
            "Remaining uses",
            "Remaining value",
            "Expiry date",
        ],
        rows,
    )


def _memberships(patients: int, membership_name: str, prefix: str, cut_over) -> bytes:
    """One for every ninth patient: joined n months before the cut-over, next cycle due on the nth
    day of its month."""
    return _csv(
        [
            "External ID",
            "Patient external ID",
            "Membership",
            "Start date",
            "Next cycle date",
            "Uses this cycle",
            "Payment",
        ],
        (
            [
                f"{prefix}M{n}",
                f"{prefix}P{n}",
                membership_name,
                _months_before(cut_over.replace(day=1 + n % 28), 1 + n % 6).isoformat(),
                cut_over.replace(day=1 + n % 28).isoformat()
                if 1 + n % 28 > cut_over.day
                else _months_before(cut_over.replace(day=1 + n % 28), -1).isoformat(),
                str(n % 2),
                "automatic" if n % 4 == 0 else "manual",
            ]
            for n in range(0, patients, 9)
        ),
    )


def _months_before(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + day.month - 1 - months
    return day.replace(year=index // 12, month=index % 12 + 1)
