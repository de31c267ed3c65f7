from django.apps import AppConfig


class JourneysConfig(AppConfig):
    name = "mailings.journeys"
    label = "journeys"
    verbose_name = "Journeys"

    def ready(self):
        from crm import extensions
        from mailings.journeys import services

        # Erasure takes a supporter out of every journey at once.
        extensions.register_erasure(services.journeys_forget)
        extensions.register_data_export(services.journeys_data_export)
