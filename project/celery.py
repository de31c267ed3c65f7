import os

from celery import Celery
from celery.signals import setup_logging

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

app = Celery("rally")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect(dispatch_uid="rally.celery.logging")
def _use_django_logging(**kwargs):
    """Log from workers and beat as the web processes do (settings.LOGGING).

    Celery would otherwise replace the root logger's handlers with its own,
    and with them the filters that keep link tokens and other supporter data
    out of the logs.
    """
    import logging.config

    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
