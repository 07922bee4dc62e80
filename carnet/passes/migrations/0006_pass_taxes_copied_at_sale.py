"""Sold passes keep their own copy of the taxes (issue 17, SPEC 5.2). Passes sold before this get the
taxes their first invoice was really issued with (the template's at the time), else the template's."""

from django.db import migrations, models


def copy_taxes(apps, schema_editor):
    Pass = apps.get_model("passes", "Pass")
    PassInvoice = apps.get_model("passes", "PassInvoice")
    InvoiceLineTax = apps.get_model("billing", "InvoiceLineTax")
    for sold in Pass.objects.select_related("template").iterator():
        first = PassInvoice.objects.filter(sold_pass=sold, invoice__isnull=False).order_by("seq").first()
        if first is not None:
            line = first.invoice.lines.order_by("pk").first()
            taxes = list(InvoiceLineTax.objects.filter(line=line).values_list("tax_id", flat=True)) if line else []
            inclusive = line.tax_inclusive if line else sold.template.tax_inclusive
        else:
            taxes = list(sold.template.taxes.values_list("pk", flat=True))
            inclusive = sold.template.tax_inclusive
        sold.taxes.set(taxes)
        if inclusive:
            Pass.objects.filter(pk=sold.pk).update(tax_inclusive=True)


class Migration(migrations.Migration):

    dependencies = [
        ('clinic', '0004_pass_expiry_rules_and_insurer_receipts'),
        ('passes', '0005_active_membership_index'),
        ('billing', '0004_pass_invoice_lines'),
    ]

    operations = [
        migrations.AddField(
            model_name='pass',
            name='tax_inclusive',
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name='pass',
            name='taxes',
            field=models.ManyToManyField(blank=True, related_name='+', to='clinic.tax'),
        ),
        migrations.RunPython(copy_taxes, migrations.RunPython.noop),
    ]
