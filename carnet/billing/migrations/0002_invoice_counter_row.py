from django.db import migrations


def create_counter(apps, schema_editor):
    # One row, created here so that concurrent first invoices never race to create it.
    apps.get_model("billing", "InvoiceCounter").objects.get_or_create(pk=1, defaults={"next_number": 1})


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_invoices_payments_allocations")]
    operations = [migrations.RunPython(create_counter, migrations.RunPython.noop)]
