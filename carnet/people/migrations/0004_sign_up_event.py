from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("people", "0003_login_failure")]

    operations = [
        migrations.CreateModel(
            name="SignUpEvent",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("at", models.DateTimeField(db_index=True)),
                ("ip", models.GenericIPAddressField(blank=True, db_index=True, null=True)),
            ],
        ),
    ]
