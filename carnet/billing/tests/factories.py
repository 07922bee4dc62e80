from carnet.billing.invoicing import LineInput, invoice_create
from carnet.clinic.models import Product


def manual_invoice(actor, patient, *amounts, category):
    """An invoice with one untaxed manual line per amount (minor units)."""
    return invoice_create(
        actor=actor.user,
        patient=patient,
        lines=[
            LineInput(
                description=f"Item {i}",
                unit_price_minor=a,
                income_category_id=category.pk,
                tax_ids=[],
            )
            for i, a in enumerate(amounts)
        ],
    )


def product(category, *, price=2500, stock=10, taxes=(), inclusive=False):
    p = Product.objects.create(
        name=f"Oil {price}-{stock}",
        price_minor=price,
        income_category=category,
        stock=stock,
        tax_inclusive=inclusive,
    )
    p.taxes.set(taxes)
    return p
