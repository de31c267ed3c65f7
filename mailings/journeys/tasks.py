"""Celery entry points for journeys."""

from celery import shared_task

from mailings.journeys import engine


@shared_task(ignore_result=True)
def run_journeys():
    """Enrol, take out and move along supporters of live journeys (run by Celery beat)."""
    engine.journeys_tick()
