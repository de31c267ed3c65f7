"""
Log records that carry the request or task they belong to, and never a
supporter's personal data.

Every log line gets `request_id` (from the X-Request-ID header a proxy set, or
a fresh one) or `task_id` (the Celery task running). Rally's own code logs ids
only; the formatter is plain text or JSON (LOG_FORMAT=json) for log shippers.
Django logs the path of every 4xx and 5xx answer, and supporter links carry a
personal token in theirs, so LinkTokenFilter replaces those tokens first.
"""

import contextvars
import copy
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


# The supporter links whose path holds a token: /join/confirm/<token>/, /act/confirm/<token>/
# (an action's opt-ins), /preferences/<token>/ (and the pages under it), /my-data/<token>/
# and /unsubscribe/<token>/. "/preferences/" alone, the "email me my link" form, holds none.
_LINK_TOKEN = re.compile(
    r"(/(?:join/confirm|act/confirm|preferences|my-data|unsubscribe)/)[^/\s?#\"'<>]+"
)
_STRIPPED = r"\g<1><token>"


def without_link_tokens(text: str) -> str:
    """Return `text` with the token of every supporter link in it replaced by "<token>"."""
    return _LINK_TOKEN.sub(_STRIPPED, text)


def sentry_event_without_link_tokens(event, hint):
    """Sentry's `before_send`: drop link tokens from the request an error report carries."""
    request = event.get("request") or {}
    for key in ("url", "query_string"):
        if isinstance(request.get(key), str):
            request[key] = without_link_tokens(request[key])
    headers = request.get("headers")
    if isinstance(headers, dict):
        for name, value in headers.items():
            if isinstance(value, str):
                headers[name] = without_link_tokens(value)
    return event


def _request_without_link_tokens(request):
    """Return a copy of `request` that prints its path, and its headers, without tokens."""
    stripped = copy.copy(request)
    stripped.__dict__.pop("headers", None)  # cached from META: read again from the copy's
    stripped.path = without_link_tokens(request.path)
    stripped.path_info = without_link_tokens(request.path_info)
    stripped.META = {
        key: without_link_tokens(value) if isinstance(value, str) else value
        for key, value in request.META.items()
    }
    return stripped


class LinkTokenFilter(logging.Filter):
    """Replace link tokens in a record's message, its arguments, traceback and request.

    A leaked token opens a supporter's preference centre, so it must not reach
    a log shipper. The record is changed in place, for every handler after
    this one; the live request is left alone (a copy replaces it).
    """

    def filter(self, record):
        try:
            message = record.getMessage()
        except Exception:
            return True  # A broken record is the handler's to report, as it does.
        stripped = without_link_tokens(message)
        if stripped != message:
            record.msg, record.args = stripped, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = without_link_tokens(record.exc_text)
        if record.stack_info:
            record.stack_info = without_link_tokens(record.stack_info)
        request = getattr(record, "request", None)
        path = getattr(request, "path", None)
        if isinstance(path, str) and without_link_tokens(path) != path:
            record.request = _request_without_link_tokens(request)
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
            # A filter may have set the text (LinkTokenFilter strips tokens from it).
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry)
