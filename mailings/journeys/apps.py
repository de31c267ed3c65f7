from django.apps import AppConfig


class JourneysConfig(AppConfig):
    name = "mailings.journeys"
    label = "journeys"
    verbose_name = "Journeys"
