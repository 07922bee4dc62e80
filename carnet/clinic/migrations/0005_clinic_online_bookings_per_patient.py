import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("clinic", "0004_pass_expiry_rules_and_insurer_receipts")]

    operations = [
        migrations.AddField(
            model_name="clinic",
            name="online_bookings_per_patient",
            field=models.PositiveSmallIntegerField(
                default=3,
                help_text="The most upcoming appointments a patient may hold from online booking at once.",
                validators=[django.core.validators.MinValueValidator(1), django.core.validators.MaxValueValidator(100)],
            ),
        ),
    ]
