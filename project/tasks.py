"""
The project's own Celery tasks (the apps' live in their tasks.py).

The project is no Django app, so autodiscover_tasks() does not look here:
CELERY_IMPORTS names this module.
"""

from celery import shared_task

from project import dashboard


# Beat queues it every RALLY_DASHBOARD_SECONDS; one that waited longer than
# that in the queue (a worker was down) is dropped, as the next one is due.
@shared_task(name="project.tasks.dashboard_refresh", ignore_result=True)
def dashboard_refresh():
    dashboard.figures_refresh()
