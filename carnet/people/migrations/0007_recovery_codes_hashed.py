"""Recovery codes stored before this migration were kept as typed (django-otp's default): each is
replaced by its digest (carnet.people.two_factor.recovery_digest), so the codes people already hold
keep working and the database no longer holds them. Not reversible: a digest cannot be turned back
into its code (going back leaves the digests, and those codes then no longer work)."""

from django.db import migrations

# A digest is 16 hex digits; a code as django-otp makes it is 8 characters of base 32.
DIGEST_LENGTH = 16


def hash_codes(apps, schema_editor):
    # late: only when this migration runs; at the top, every migrate and makemigrations would
    # load the two-factor module (and what it imports) long after this has been applied
    from carnet.people.two_factor import recovery_digest

    StaticToken = apps.get_model("otp_static", "StaticToken")
    for token in StaticToken.objects.select_related("device").iterator():
        if len(token.token) != DIGEST_LENGTH:
            token.token = recovery_digest(token.device.user_id, token.token)
            token.save(update_fields=["token"])


class Migration(migrations.Migration):
    dependencies = [
        ("people", "0006_login_session"),
        ("otp_static", "0003_add_timestamps"),
    ]

    operations = [migrations.RunPython(hash_codes, migrations.RunPython.noop, elidable=True)]
