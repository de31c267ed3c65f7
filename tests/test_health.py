import json
import logging

import pytest
from django.core.cache import cache

from project.health import HEARTBEAT_KEY, heartbeat

pytestmark = pytest.mark.django_db


def test_healthz_reports_each_component(client):
    cache.delete(HEARTBEAT_KEY)
    response = client.get("/healthz")
    report = response.json()
    assert response.status_code == 200
    assert report["ok"] is True
    assert report["database"]["ok"] is True
    assert report["worker"] == {"ok": False, "detail": "no heartbeat yet"}


def test_worker_heartbeat_shows_in_healthz(client):
    heartbeat()
    report = client.get("/healthz").json()
    assert report["worker"]["ok"] is True
    assert report["worker"]["heartbeat_age_seconds"] < 5


def test_healthz_answers_503_when_the_broker_is_unreachable(client, settings):
    from project.celery import app

    original = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:1/0"
    try:
        response = client.get("/healthz")
    finally:
        app.conf.broker_url = original
    assert response.status_code == 503
    assert response.json()["broker"]["ok"] is False


@pytest.mark.redis
def test_healthz_shows_queue_depth_on_redis(client):
    report = client.get("/healthz").json()
    assert report["redis"]["ok"] is True
    assert set(report["broker"]["queue_depth"]) >= {"celery", "sending"}


def test_responses_carry_a_request_id(client):
    response = client.get("/healthz", HTTP_X_REQUEST_ID="abc-123")
    assert response["X-Request-ID"] == "abc-123"
    hostile = client.get("/healthz", HTTP_X_REQUEST_ID="<script>")
    assert hostile["X-Request-ID"] != "<script>"
    assert len(hostile["X-Request-ID"]) == 32


def test_json_log_format_includes_the_request_id():
    from project.logging import ContextFilter, JSONFormatter, current_request_id

    token = current_request_id.set("req-42")
    try:
        record = logging.LogRecord("rally", logging.INFO, __file__, 1, "sent %s", (3,), None)
        ContextFilter().filter(record)
        line = json.loads(JSONFormatter().format(record))
    finally:
        current_request_id.reset(token)
    assert (line["message"], line["request_id"], line["task_id"]) == ("sent 3", "req-42", "-")
