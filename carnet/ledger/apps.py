from django.apps import AppConfig


class LedgerConfig(AppConfig):
    name = "carnet.ledger"
    label = "ledger"
