from django.apps import AppConfig


class StaffConfig(AppConfig):
    name = "carnet.staff"
    label = "staff"
