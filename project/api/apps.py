from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "project.api"
    label = "api"
    verbose_name = "API and webhooks"
