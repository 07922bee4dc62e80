from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("clinic", "0007_proportional_breakage")]

    operations = [
        migrations.AddField(
            model_name="clinic",
            name="two_factor_all_staff",
            field=models.BooleanField(
                default=False,
                help_text="Every staff login must use an authenticator app (Full Access and Account Owner always must).",
                verbose_name="Two-factor log-in for all staff",
            ),
        ),
    ]
