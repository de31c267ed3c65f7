"""
/healthz for load balancers and monitors, and the worker heartbeat behind it.

Celery beat runs `project.health.heartbeat` every HEARTBEAT_SECONDS; a worker
that runs it stamps the cache. So a fresh stamp proves the whole chain (beat,
broker, a worker, the cache) works, which no single ping does.
"""

import time

from celery import shared_task
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache

HEARTBEAT_KEY = "rally.health.worker-heartbeat"
HEARTBEAT_SECONDS = 30
QUEUES = ("celery", "sending", "imports", "webhooks")


# The project is no Django app, so autodiscover_tasks() does not look here:
# CELERY_IMPORTS names this module.
@shared_task(name="project.health.heartbeat", ignore_result=True)
def heartbeat():
    cache.set(HEARTBEAT_KEY, time.time(), timeout=None)


def _database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return {"ok": True}


def _redis():
    if not settings.REDIS_URL:
        return {"ok": True, "detail": "not configured"}
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
    client.ping()
    return {"ok": True}


def _broker():
    from project.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
        depth = None
        if conn.transport.driver_type == "redis":
            client = conn.default_channel.client
            depth = {queue: client.llen(queue) for queue in QUEUES}
    return {"ok": True, "queue_depth": depth}


def _worker():
    stamp = cache.get(HEARTBEAT_KEY)
    if stamp is None:
        return {"ok": False, "detail": "no heartbeat yet"}
    age = time.time() - stamp
    return {"ok": age < 4 * HEARTBEAT_SECONDS, "heartbeat_age_seconds": round(age, 1)}


CHECKS = {"database": _database, "redis": _redis, "broker": _broker, "worker": _worker}
# A web process can serve pages without a live worker; only these make it unfit.
ESSENTIAL = ("database", "redis", "broker")


@never_cache
def healthz(request):
    """Report each component; answer 503 if an essential one is down."""
    report = {}
    for name, check in CHECKS.items():
        try:
            report[name] = check()
        except Exception as error:  # a health check reports failures, never raises
            report[name] = {"ok": False, "detail": type(error).__name__}
    healthy = all(report[name]["ok"] for name in ESSENTIAL)
    return JsonResponse({"ok": healthy, **report}, status=200 if healthy else 503)
