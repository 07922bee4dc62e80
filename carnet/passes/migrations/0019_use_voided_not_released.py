# Issue 24, one word per concept: a use of a pass is reserved → posted → voided (CONVENTIONS
# habit 9), no longer "released". The stored status 'released' becomes 'voided' (and back,
# reversed), and released_at is renamed voided_at in place; no data is lost either way.

from django.db import migrations, models


def released_to_voided(apps, schema_editor):
    Redemption = apps.get_model("passes", "Redemption")
    Redemption.objects.filter(status="released").update(status="voided")


def voided_to_released(apps, schema_editor):
    Redemption = apps.get_model("passes", "Redemption")
    Redemption.objects.filter(status="voided").update(status="released")


class Migration(migrations.Migration):
    dependencies = [
        ("passes", "0018_membership_freeze_fees"),
    ]

    operations = [
        migrations.RenameField(
            model_name="redemption", old_name="released_at", new_name="voided_at"
        ),
        migrations.AlterField(
            model_name="redemption",
            name="status",
            field=models.CharField(
                choices=[("reserved", "Reserved"), ("posted", "Used"), ("voided", "Voided")],
                default="reserved",
                max_length=10,
            ),
        ),
        migrations.RunPython(released_to_voided, voided_to_released),
    ]
