from django.apps import AppConfig


class PeopleConfig(AppConfig):
    name = "carnet.people"
    label = "people"
