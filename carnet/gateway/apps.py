from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "carnet.gateway"
    label = "gateway"
    verbose_name = "Payment gateway"
