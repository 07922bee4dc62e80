"""Benchmark 4: a patient's Billing tab and Packages & Memberships page with 200
passes and 500 invoices.

Set-up (once, reused): a patient sold 180 packages and 20 monthly memberships through the services
(`package_sell`, `membership_sell`: 200 pass invoices), every other one paid, plus 300 treatment
invoices (`invoice_create`) — 500 invoices. A second patient with a tenth of that shows whether the
query count grows with the data.

Timed: the Django test client's GET of each page in-process (server time: middleware, view,
template), as the account owner, DEBUG off; median of repeats; queries counted with
CaptureQueriesContext. Asserted: each page under 150 ms, its query count at most --max-queries and
the same for both patients.
"""

from __future__ import annotations

import statistics
import time

from common import base, emit, machine, page_client, patients

PACK, MEMBERSHIP = "Bench tab pack", "Bench tab membership"


def _templates(b):
    from carnet.core import clock
    from carnet.passes.models import EligibleItem, PassTemplate

    out = []
    for name, fields in (
        (PACK, {"price_minor": 90000, "quantity": 10}),
        (
            MEMBERSHIP,
            {"kind": "membership", "price_minor": 6000, "cycle": "monthly", "uses_per_cycle": 2},
        ),
    ):
        template = PassTemplate.objects.filter(name=name).first()
        if template is None:
            now = clock.now()
            template = PassTemplate.objects.create(
                name=name, income_category=b["category"], created_at=now, updated_at=now, **fields
            )
            template.taxes.set([b["tax"]])
            EligibleItem.objects.create(
                template=template, treatment=b["treatment"], additional_charge_minor=0
            )
        out.append(template)
    return out


def _patient(b, label: str, passes: int, invoices: int):
    from carnet.billing.invoicing import LineInput, invoice_create
    from carnet.billing.models import Invoice
    from carnet.billing.payments import payment_receive
    from carnet.passes.memberships.services import membership_sell
    from carnet.passes.models import Pass
    from carnet.passes.packages.selling import package_sell

    [patient] = patients(label, 1)
    pack, membership = _templates(b)
    # The first version of the billing-job benchmark marked every active
    # membership deleted: undo that.
    Pass.objects.filter(patient=patient, template=membership, status="deleted").update(
        status="active"
    )
    owner = b["owner"].user
    have = Pass.objects.filter(patient=patient).count()
    memberships = passes // 10
    for n in range(have, passes):
        if n < memberships:
            sold = membership_sell(actor=owner, patient=patient, template=membership)
        else:
            sold = package_sell(actor=owner, patient=patient, template=pack)
        if n % 2 == 0:
            for invoice in Invoice.objects.filter(
                patient=patient, applied_minor=0, deleted_at=None, total_minor__gt=0
            ).order_by("-pk")[:1]:
                payment_receive(
                    actor=owner,
                    patient=patient,
                    method="cash",
                    amount_minor=invoice.total_minor,
                    allocations=[(invoice, invoice.total_minor)],
                )
        del sold
    for n in range(Invoice.objects.filter(patient=patient).count(), invoices):
        invoice = invoice_create(
            actor=owner,
            patient=patient,
            lines=[
                LineInput(
                    treatment_id=b["treatment"].pk,
                    staff_id=b["practitioners"][0].pk,
                    description="Massage 60",
                )
            ],
            location=b["location"],
        )
        if n % 2 == 0:
            payment_receive(
                actor=owner,
                patient=patient,
                method="cash",
                amount_minor=invoice.total_minor,
                allocations=[(invoice, invoice.total_minor)],
            )
    return patient


def _measure(client, url: str, repeat: int) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    response = client.get(url)  # warm (templates, caches)
    assert response.status_code == 200, (url, response.status_code)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        response = client.get(url)
        times.append(time.perf_counter() - t0)
    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    return {
        "url": url,
        "median_ms": round(statistics.median(times) * 1000, 1),
        "max_ms": round(max(times) * 1000, 1),
        "queries": len(queries),
        "bytes": len(response.content),
    }


def run(args) -> dict:
    from carnet.billing.models import Invoice
    from carnet.passes.models import Pass

    b = base()
    big = _patient(b, "BenchTabBig", args.tab_passes, args.tab_invoices)
    small = _patient(
        b, "BenchTabSmall", max(2, args.tab_passes // 10), max(5, args.tab_invoices // 10)
    )
    client = page_client(b["owner"].user)
    repeat = 3 if args.quick else 10
    pages = {}
    for name, path in (
        ("billing_tab", "/patients/{}/billing/"),
        ("passes_page", "/patients/{}/passes/"),
    ):
        pages[name] = {
            "big": _measure(client, path.format(big.pk), repeat),
            "small": _measure(client, path.format(small.pk), repeat),
        }
    misses = []
    for name, page in pages.items():
        if page["big"]["median_ms"] >= 150:
            misses.append(f"{name} {page['big']['median_ms']} ms")
        if page["big"]["queries"] > args.max_queries:
            misses.append(f"{name} {page['big']['queries']} queries > {args.max_queries}")
        if page["big"]["queries"] != page["small"]["queries"]:
            misses.append(
                f"{name} queries grow with the data ({page['small']['queries']} → "
                f"{page['big']['queries']})"
            )
    result = {
        "benchmark": "billing_tab",
        "passes": Pass.objects.filter(patient=big).count(),
        "invoices": Invoice.objects.filter(patient=big).count(),
        "pages": pages,
        "max_queries": args.max_queries,
        "target": "< 150 ms server time, bounded queries",
        "misses": misses,
        "pass": not misses,
        "machine": machine(),
    }
    bt, pp = pages["billing_tab"]["big"], pages["passes_page"]["big"]
    emit(
        result,
        f"billing tab: {result['passes']} passes, {result['invoices']} invoices — Billing tab "
        f"{bt['median_ms']} ms / {bt['queries']} queries, Packages page {pp['median_ms']} ms / "
        f"{pp['queries']} queries — {'PASS' if not misses else 'MISS: ' + '; '.join(misses)}",
    )
    return result
