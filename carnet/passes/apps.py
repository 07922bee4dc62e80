from django.apps import AppConfig


class PassesConfig(AppConfig):
    name = "carnet.passes"
    label = "passes"

    def ready(self):
        # Registers the card-attempt purposes (online purchases,
        # instalments) before any reconciliation runs.
        from carnet.passes.packages import instalments, online  # noqa: F401
