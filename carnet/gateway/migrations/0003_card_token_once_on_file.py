from django.db import migrations, models


def duplicates_off_file(apps, schema_editor):
    """Before the constraint: a card kept twice (the page and the webhook at once) stays on file
    once, as its first row; the later rows are taken off file (kept: payments may refer to them)."""
    CardOnFile = apps.get_model("gateway", "CardOnFile")
    seen = set()
    for card in CardOnFile.objects.filter(removed_at__isnull=True).order_by("pk"):
        if card.token in seen:
            CardOnFile.objects.filter(pk=card.pk).update(removed_at=card.created_at)
        seen.add(card.token)


class Migration(migrations.Migration):
    dependencies = [("gateway", "0002_gateway_customers")]

    operations = [
        migrations.RunPython(duplicates_off_file, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="cardonfile",
            constraint=models.UniqueConstraint(
                condition=models.Q(("removed_at__isnull", True)),
                fields=("token",),
                name="card_token_once_on_file",
            ),
        ),
    ]
