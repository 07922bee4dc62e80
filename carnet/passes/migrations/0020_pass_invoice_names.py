# Issue 24, one word per concept: a pass's invoices are its pass invoices (a membership's cycles, a
# payment plan's instalments), so the reverse names are pass_invoices / pass_invoice (were
# instalment_rows / pass_instalment: no change in the database), and a plan change's new cycle is
# `cycle` (was charge_row: the column renamed in place, data kept).

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("passes", "0019_use_voided_not_released"),
    ]

    operations = [
        migrations.AlterField(
            model_name="passinvoice",
            name="sold_pass",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="pass_invoices",
                to="passes.pass",
            ),
        ),
        migrations.AlterField(
            model_name="passinvoice",
            name="invoice",
            field=models.OneToOneField(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="pass_invoice",
                to="billing.invoice",
            ),
        ),
        migrations.RenameField(
            model_name="passplanchange", old_name="charge_row", new_name="cycle"
        ),
    ]
