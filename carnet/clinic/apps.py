from django.apps import AppConfig


class ClinicConfig(AppConfig):
    name = "carnet.clinic"
    label = "clinic"

    def ready(self):
        # late: models load only once the app registry is ready
        from django.db.models.signals import post_delete, post_save

        from .models import Clinic
        from .selectors import forget_clinic_currency

        # The cached currency must follow a settings change (and test databases being reset).
        post_save.connect(
            forget_clinic_currency, sender=Clinic, dispatch_uid="forget_clinic_currency"
        )
        post_delete.connect(
            forget_clinic_currency, sender=Clinic, dispatch_uid="forget_clinic_currency_del"
        )
