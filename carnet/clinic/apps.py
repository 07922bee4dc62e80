from django.apps import AppConfig


class ClinicConfig(AppConfig):
    name = "carnet.clinic"
    label = "clinic"
