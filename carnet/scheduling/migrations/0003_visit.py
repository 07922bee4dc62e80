# The appointment's patient row is a Visit (issue 24: one word per concept). RenameModel keeps
# the rows and their ids: the table becomes scheduling_visit and the foreign keys to it
# (passes.Redemption.visit) follow; only the related names change besides.

import django.db.models.deletion
from django.db import migrations, models

OLD, NEW = "scheduling.appointmentpatient", "scheduling.visit"


def _relabel(apps, before: str, after: str) -> None:
    """The activity log names a logged object by its model's label ("joined" logs a visit), so the
    activity page's type filter keeps finding the old entries under the new name."""
    log = apps.get_model("core", "ActivityLog")
    log.objects.filter(object_type=before).update(object_type=after)


def forwards(apps, schema_editor):
    _relabel(apps, OLD, NEW)


def backwards(apps, schema_editor):
    _relabel(apps, NEW, OLD)


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0002_idempotency_secret_withheld_and_age_index"),
        ("scheduling", "0002_practitioner_breaks"),
    ]

    operations = [
        migrations.RenameModel(old_name="AppointmentPatient", new_name="Visit"),
        migrations.AlterField(
            model_name="visit",
            name="appointment",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="visits",
                to="scheduling.appointment",
            ),
        ),
        migrations.AlterField(
            model_name="visit",
            name="patient",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="visits",
                to="people.patient",
            ),
        ),
        migrations.RunPython(forwards, backwards, elidable=False),
    ]
