"""
Log records that carry the request or task they belong to, and never a
supporter's personal data.

Every log line gets `request_id` (from the X-Request-ID header a proxy set, or
a fresh one) or `task_id` (the Celery task running). Rally's own code logs ids
only; the formatter is plain text or JSON (LOG_FORMAT=json) for log shippers.
"""

import contextvars
import json
import logging
import re
import uuid

from celery.signals import task_postrun, task_prerun

current_request_id = contextvars.ContextVar("request_id", default="-")
current_task_id = contextvars.ContextVar("task_id", default="-")

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestIdMiddleware:
    """Tag the request (and its log lines and response) with an id."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        value = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = current_request_id.set(value)
        try:
            response = self.get_response(request)
        finally:
            current_request_id.reset(token)
        response["X-Request-ID"] = value
        return response


@task_prerun.connect(dispatch_uid="rally.logging.task_started")
def _task_started(task_id=None, **kwargs):
    current_task_id.set(task_id or "-")


@task_postrun.connect(dispatch_uid="rally.logging.task_finished")
def _task_finished(**kwargs):
    current_task_id.set("-")


class ContextFilter(logging.Filter):
    def filter(self, record):
        record.request_id = current_request_id.get()
        record.task_id = current_task_id.get()
        return True


class JSONFormatter(logging.Formatter):
    def format(self, record):
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            "task_id": getattr(record, "task_id", "-"),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)
