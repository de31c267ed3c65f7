from django.apps import AppConfig


class ActionsConfig(AppConfig):
    name = "mailings.actions"
    label = "actions"
    verbose_name = "Actions"
