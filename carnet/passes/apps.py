from django.apps import AppConfig


class PassesConfig(AppConfig):
    name = "carnet.passes"
    label = "passes"
