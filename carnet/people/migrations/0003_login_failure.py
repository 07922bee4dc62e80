from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("people", "0002_staff_calendar_feed_digest")]

    operations = [
        migrations.CreateModel(
            name="LoginFailure",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("at", models.DateTimeField(db_index=True)),
                ("username", models.CharField(db_index=True, max_length=254)),
                ("ip", models.GenericIPAddressField(blank=True, db_index=True, null=True)),
                ("trusted_device", models.BooleanField(default=False)),
            ],
        ),
    ]
