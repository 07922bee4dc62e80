from django.apps import AppConfig


class ReportsConfig(AppConfig):
    name = "carnet.reports"
    label = "reports"
