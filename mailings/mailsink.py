"""A loopback email service provider: Rally's local mail sink and ESP simulator.

One small HTTP server plays two parts:

* In development (``make run`` starts ``python manage.py mailsink``) it is the
  zero-setup mail sink: the default settings point Anymail's real Postmark backend
  at it, it keeps every email Rally sends and shows them at ``/``.
* In tests and benchmarks it stands in for the ESP: it speaks enough of Postmark's
  and Mailgun's send APIs that Anymail's real backends work unchanged (only the API
  URL differs), records one :class:`SentMessage` per recipient, and injects the
  faults real ESPs produce (latency, 5xx, 429 with Retry-After, hangs, per-call
  recipient limits, refused addresses). It also answers the two read APIs the
  sending engine uses to ask whether a message whose answer it lost was accepted:
  Postmark's outbound message search and Mailgun's events API.

Python API, in-process::

    sink = MailSink(port=0, latency_ms=0).start()
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": "t", "POSTMARK_API_URL": sink.postmark_api_url}
    ...
    assert sink.recipients() == ["alice@example.org"]
    sink.fail_next(2, status=503)
    sink.stop()

Another process (a Celery worker, a benchmark) reads and configures a running sink
over HTTP with :class:`MailSinkClient`, or directly:

    GET  /api/messages?to=&since=&after=&limit=&bodies=0   recorded messages, oldest first
    GET  /api/messages/<id>                                 one recorded message
    GET  /api/recipients                                    {"count": n, "recipients": [...]}
    GET  /api/calls                                         one row per send API call
    GET  /api/stats                                         counters and current faults
    GET  /api/faults        POST /api/faults (JSON)         read or change fault injection
    POST /api/clear                                         forget messages, calls and faults

and, as the ESPs do, ``GET /postmark/messages/outbound`` (message search) and
``GET /mailgun/v3/<domain>/events`` (accepted events).

The module depends on the standard library only, so benchmarks can run it without
Django: ``python -m mailings.mailsink --port 18100 --latency-ms 100`` runs one.
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import html
import json
import logging
import re
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import HTTP
from email.utils import getaddresses, parsedate_to_datetime
from html.parser import HTMLParser
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["MailSink", "MailSinkClient", "SentMessage", "SinkCall", "main"]

# Postmark answers 422 with one of these codes; Anymail reads the code and message.
POSTMARK_INVALID_REQUEST = 300
POSTMARK_INACTIVE_RECIPIENT = 406
POSTMARK_TOO_MANY_BATCH_MESSAGES = 410
POSTMARK_BAD_TOKEN = 10
POSTMARK_RATE_LIMIT = 429
# The ESPs' own per-call limits, applied unless a test sets recipient_limit.
POSTMARK_MAX_BATCH = 500
POSTMARK_MAX_RECIPIENTS = 50
MAILGUN_MAX_RECIPIENTS = 1000
# The read APIs' own limits: Postmark's search pages (count, and count + offset),
# Mailgun's events per page.
POSTMARK_MAX_SEARCH_COUNT = 500
POSTMARK_MAX_SEARCH_DEPTH = 10_000
MAILGUN_MAX_EVENTS = 300

_ADDR_SPEC = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")
_RECIPIENT_VARIABLE = re.compile(r"%recipient\.([^%]+)%")
_UNSET = object()


@dataclass(slots=True, eq=False)
class SentMessage:
    """One accepted message for one recipient, as the ESP received it.

    A batch call with 500 recipients produces 500 of these. ``text`` and ``html``
    are ``None`` when the message had no such part, or once the record has aged
    beyond the sink's ``keep_bodies`` window (see :class:`MailSink`).
    """

    id: int  # record number in this sink, from 1, in order of acceptance
    esp: str  # "postmark" or "mailgun"
    message_id: str  # the id the ESP answered with (what Anymail stores)
    call: int  # number of the send API call that carried it, from 1
    received_at: float  # Unix time of acceptance
    rcpt_type: str  # "to", "cc" or "bcc"
    to: str  # the recipient as sent, e.g. "Alice <alice@example.org>"
    address: str  # the recipient's addr-spec, lower-cased
    from_email: str
    subject: str
    text: str | None
    html: str | None
    headers: dict[str, str]  # extra headers: List-Unsubscribe, List-Id, Reply-To, ...
    metadata: dict[str, str]  # Anymail metadata (Postmark Metadata, Mailgun v:*)
    tags: list[str]
    options: dict[str, str] = field(default_factory=dict)  # ESP options (o:*, TrackOpens…)

    def header(self, name: str, default: str | None = None) -> str | None:
        """Return the extra header ``name`` (case-insensitive), or ``default``."""
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return default

    @property
    def received_at_iso(self) -> str:
        return datetime.fromtimestamp(self.received_at, UTC).isoformat()

    def to_dict(self, *, bodies: bool = True) -> dict[str, Any]:
        """Return the record as JSON-ready data (the shape ``/api/messages`` serves)."""
        data = {
            "id": self.id,
            "esp": self.esp,
            "message_id": self.message_id,
            "call": self.call,
            "received_at": self.received_at_iso,
            "rcpt_type": self.rcpt_type,
            "to": self.to,
            "address": self.address,
            "from_email": self.from_email,
            "subject": self.subject,
            "headers": self.headers,
            "metadata": self.metadata,
            "tags": self.tags,
            "options": self.options,
        }
        if bodies:
            data["text"] = self.text
            data["html"] = self.html
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SentMessage:
        """Rebuild a record from :meth:`to_dict` output (as read from the API or a file)."""
        received = data["received_at"]
        if isinstance(received, str):
            received = datetime.fromisoformat(received).timestamp()
        return cls(
            id=data["id"],
            esp=data["esp"],
            message_id=data["message_id"],
            call=data["call"],
            received_at=received,
            rcpt_type=data.get("rcpt_type", "to"),
            to=data["to"],
            address=data["address"],
            from_email=data["from_email"],
            subject=data["subject"],
            text=data.get("text"),
            html=data.get("html"),
            headers=data.get("headers") or {},
            metadata=data.get("metadata") or {},
            tags=data.get("tags") or [],
            options=data.get("options") or {},
        )


@dataclass(slots=True, frozen=True)
class SinkCall:
    """One send API call and how the sink answered it."""

    number: int  # from 1
    esp: str
    endpoint: str  # e.g. "email/batch", "messages"
    status: int  # HTTP status answered (0 when the client gave up during a hang)
    recipients: int  # recipients in the request
    accepted: int  # recipients recorded
    started_at: float  # Unix time the request arrived
    duration: float  # seconds, including injected latency

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "esp": self.esp,
            "endpoint": self.endpoint,
            "status": self.status,
            "recipients": self.recipients,
            "accepted": self.accepted,
            "started_at": self.started_at,
            "duration": self.duration,
        }


class _Reply(Exception):
    """Answer the current request with this status, JSON body and headers."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None):
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


class _Faults:
    """The fault plan. Guarded by the sink's lock."""

    def __init__(self, latency_ms: float):
        self.latency_ms = float(latency_ms)
        self.recipient_limit: int | None = None
        self.reject: set[str] = set()
        self.invalid: set[str] = set()
        self.always: dict[str, Any] | None = None
        self.script: collections.deque[dict[str, Any]] = collections.deque()
        self.lookup_status: int | None = None  # answer for the read APIs, when failing

    def limit_for(self, esp_limit: int) -> int:
        return esp_limit if self.recipient_limit is None else self.recipient_limit

    def to_dict(self) -> dict[str, Any]:
        return {
            "latency_ms": self.latency_ms,
            "recipient_limit": self.recipient_limit,
            "reject": sorted(self.reject),
            "invalid": sorted(self.invalid),
            "always": self.always,
            "next": list(self.script),
            "lookup_status": self.lookup_status,
        }


def _fault(kind: str, **params: Any) -> dict[str, Any]:
    if kind == "status":
        status = int(params.get("status", 503))
        if not 400 <= status <= 599:
            raise ValueError(f"A failure status must be 4xx or 5xx, not {status}.")
        return {"kind": "status", "status": status}
    if kind == "rate_limit":
        return {"kind": "rate_limit", "retry_after": int(params.get("retry_after", 1))}
    if kind == "hang":
        return {
            "kind": "hang",
            "seconds": float(params.get("seconds", 30)),
            "accept": bool(params.get("accept", False)),
        }
    raise ValueError(f"Unknown fault {kind!r}; expected status, rate_limit or hang.")


class MailSink:
    """A loopback ESP: records what Anymail sends and injects the ESP's faults.

    ``MailSink(port=0).start()`` listens on a free loopback port in a background
    thread; use it as a context manager or call :meth:`stop`. ``latency_ms`` (default
    100, like a real ESP's API) delays every send call; set it to 0 for quick tests.

    Memory: each record keeps its headers and metadata; the HTML and text bodies of
    only the newest ``keep_bodies`` records are kept (``None`` keeps all), so a
    100,000-recipient benchmark stays small. Values equal to the previous record's
    (bodies, subject, List-Id...) are stored once.

    ``persist_path`` (a JSON-lines file) makes the sink reload earlier messages on
    start and append each accepted message, so the development sink survives
    restarts. Tests and benchmarks leave it unset and work in memory only.

    ``postmark_token`` / ``mailgun_api_key``: when set, other credentials are refused
    with the ESP's 401; when unset, any non-empty credential is accepted.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: float = 100,
        keep_bodies: int | None = 1_000,
        persist_path: str | Path | None = None,
        postmark_token: str | None = None,
        mailgun_api_key: str | None = None,
    ):
        self.host = host
        self.requested_port = port
        self.keep_bodies = keep_bodies
        self.persist_path = Path(persist_path) if persist_path else None
        self.postmark_token = postmark_token
        self.mailgun_api_key = mailgun_api_key
        self._lock = threading.Condition()
        self._faults = _Faults(latency_ms)
        self._records: list[SentMessage] = []
        self._rejected: list[str] = []
        self._calls: list[SinkCall] = []
        self._call_count = 0
        self._lookup_count = 0
        self._last_id = 0  # record ids are never reused, even after clear()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._persist_file = None
        self.started_at = time.time()

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> MailSink:
        """Start serving in a daemon thread and return ``self``."""
        self._open()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"mailsink:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self, *, on_ready: Callable[[MailSink], None] | None = None) -> None:
        """Serve in the calling thread until interrupted (used by the command).

        ``on_ready`` is called once the socket listens, e.g. to print the URL.
        """
        self._open()
        if on_ready is not None:
            on_ready(self)
        try:
            self._server.serve_forever(poll_interval=0.2)
        finally:
            self._close()

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._server is not None:
            self._server.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._close()

    def __enter__(self) -> MailSink:
        return self.start() if self._server is None else self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _open(self) -> None:
        if self._server is not None:
            raise RuntimeError("This mail sink is already running.")
        if self.persist_path:
            self._load(self.persist_path)
            self.persist_path.parent.mkdir(parents=True, exist_ok=True)
            self._persist_file = self.persist_path.open("a", encoding="utf-8")
        self._server = _Server((self.host, self.requested_port), _Handler)
        self._server.sink = self

    def _close(self) -> None:
        if self._server is not None:
            self._server.server_close()
            self._server = None
        if self._persist_file is not None:
            self._persist_file.close()
            self._persist_file = None

    # -- addresses -------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("Start the mail sink first.")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8025`` (no trailing slash)."""
        return f"http://{self.host}:{self.port}"

    @property
    def postmark_api_url(self) -> str:
        """Value for ``ANYMAIL["POSTMARK_API_URL"]``."""
        return f"{self.url}/postmark/"

    @property
    def mailgun_api_url(self) -> str:
        """Value for ``ANYMAIL["MAILGUN_API_URL"]``."""
        return f"{self.url}/mailgun/v3"

    # -- reading ---------------------------------------------------------------------

    def messages(
        self,
        *,
        to: str | None = None,
        since: int | None = None,
        after: float | None = None,
        esp: str | None = None,
    ) -> list[SentMessage]:
        """Return recorded messages, oldest first.

        ``to`` keeps one recipient (case-insensitive addr-spec), ``since`` keeps
        records whose ``id`` is greater, ``after`` keeps those received after a Unix
        time, ``esp`` keeps "postmark" or "mailgun".
        """
        with self._lock:
            records = self._records if since is None else self._records[self._index_after(since) :]
            records = list(records)
        if to is not None:
            wanted = to.strip().lower()
            records = [r for r in records if r.address == wanted]
        if after is not None:
            records = [r for r in records if r.received_at > after]
        if esp is not None:
            records = [r for r in records if r.esp == esp]
        return records

    def message(self, id: int) -> SentMessage | None:
        """Return the record with this ``id``, or ``None``."""
        with self._lock:
            index = self._index_after(id - 1)
            if index < len(self._records) and self._records[index].id == id:
                return self._records[index]
        return None

    def last(self, *, to: str | None = None) -> SentMessage | None:
        """Return the newest record (for ``to``, when given), or ``None``."""
        wanted = to.strip().lower() if to else None
        with self._lock:
            for record in reversed(self._records):
                if wanted is None or record.address == wanted:
                    return record
        return None

    def recipients(self) -> list[str]:
        """Return every recorded recipient's addr-spec in order, duplicates kept.

        Compare with ``collections.Counter`` to check that each recipient got a
        message exactly once.
        """
        with self._lock:
            return [r.address for r in self._records]

    def rejected(self) -> list[str]:
        """Return the addresses refused by the ``reject``/``invalid`` faults, in order."""
        with self._lock:
            return list(self._rejected)

    def calls(self) -> list[SinkCall]:
        """Return one :class:`SinkCall` per send API call, oldest first."""
        with self._lock:
            return list(self._calls)

    @property
    def call_count(self) -> int:
        """How many send API calls arrived, answered or not."""
        with self._lock:
            return self._call_count

    def count(self) -> int:
        """How many recipient records are held."""
        with self._lock:
            return len(self._records)

    def wait_for(self, count: int, *, timeout: float = 10) -> bool:
        """Block until at least ``count`` records are held; return whether they are."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._records) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)
        return True

    def stats(self) -> dict[str, Any]:
        """Return counters and the current fault plan (what ``/api/stats`` serves)."""
        with self._lock:
            return {
                "messages": len(self._records),
                "rejected": len(self._rejected),
                "calls": self._call_count,
                "lookups": self._lookup_count,
                "started_at": self.started_at,
                "faults": self._faults.to_dict(),
            }

    def clear(self) -> None:
        """Forget recorded messages, rejections and calls, and reset the faults.

        The latency set at construction (or by :meth:`set_faults`) is kept.
        """
        with self._lock:
            self._records.clear()
            self._rejected.clear()
            self._calls.clear()
            self._call_count = 0
            self._lookup_count = 0
            self._faults = _Faults(self._faults.latency_ms)
            if self._persist_file is not None:
                self._persist_file.truncate(0)
                self._persist_file.seek(0)

    # -- faults ----------------------------------------------------------------------

    @property
    def faults(self) -> dict[str, Any]:
        """The current fault plan, as data."""
        with self._lock:
            return self._faults.to_dict()

    def set_faults(
        self,
        *,
        latency_ms: float | None = None,
        recipient_limit: Any = _UNSET,
        reject: list[str] | None = None,
        invalid: list[str] | None = None,
    ) -> None:
        """Change the standing faults; arguments left out stay as they are.

        ``latency_ms``: delay before answering each send call.
        ``recipient_limit``: calls carrying more recipients are refused as the ESP
        does (Postmark: 422 ErrorCode 410 for a batch, 300 for one message; Mailgun:
        400). ``None`` restores the ESP's own limits: Postmark 500 messages per
        batch and 50 recipients per message, Mailgun 1,000 recipients per call.
        ``reject``: addresses refused as inactive (Postmark ErrorCode 406, Anymail
        status "rejected"; Mailgun queues the call and drops the recipient).
        ``invalid``: addresses refused as invalid (Postmark ErrorCode 300, Anymail
        status "invalid"; Mailgun answers 400).
        """
        with self._lock:
            if latency_ms is not None:
                self._faults.latency_ms = float(latency_ms)
            if recipient_limit is not _UNSET:
                self._faults.recipient_limit = (
                    None if recipient_limit is None else int(recipient_limit)
                )
            if reject is not None:
                self._faults.reject = {a.strip().lower() for a in reject}
            if invalid is not None:
                self._faults.invalid = {a.strip().lower() for a in invalid}

    def fail_next(self, count: int = 1, *, status: int = 503) -> None:
        """Answer the next ``count`` send calls with HTTP ``status``, recording nothing."""
        self._queue(count, _fault("status", status=status))

    def rate_limit_next(self, count: int = 1, *, retry_after: int = 1) -> None:
        """Answer the next ``count`` send calls 429 with ``Retry-After: retry_after``."""
        self._queue(count, _fault("rate_limit", retry_after=retry_after))

    def hang_next(self, count: int = 1, *, seconds: float = 30, accept: bool = False) -> None:
        """Hold the next ``count`` send calls for ``seconds`` before answering.

        With ``accept=False`` the held call records nothing and then answers 504 (the
        client has usually timed out by then). ``accept=True`` records the message
        and answers normally after the delay, like an ESP that accepted the mail
        while the client gave up: the window in which a retry sends twice.
        """
        self._queue(count, _fault("hang", seconds=seconds, accept=accept))

    def fail_always(self, status: int | None = 503, *, retry_after: int = 1) -> None:
        """Answer every send call with ``status`` until called with ``None``.

        ``status=429`` answers with ``Retry-After: retry_after``.
        """
        with self._lock:
            if status is None:
                self._faults.always = None
            elif status == 429:
                self._faults.always = _fault("rate_limit", retry_after=retry_after)
            else:
                self._faults.always = _fault("status", status=status)

    def fail_lookups(self, status: int | None = 503) -> None:
        """Answer the read APIs (message search, events) with ``status`` until ``None``.

        Stands in for an ESP whose search is down, or one with no such API: the
        sending engine then cannot learn whether a message it lost track of was
        accepted. Send calls are not affected.
        """
        if status is not None and not 400 <= int(status) <= 599:
            raise ValueError(f"A failure status must be 4xx or 5xx, not {status}.")
        with self._lock:
            self._faults.lookup_status = None if status is None else int(status)

    @property
    def lookup_count(self) -> int:
        """How many read API calls (message search, events) arrived."""
        with self._lock:
            return self._lookup_count

    def reset_faults(self) -> None:
        """Remove every fault, keeping the latency."""
        with self._lock:
            self._faults = _Faults(self._faults.latency_ms)

    def configure(self, data: dict[str, Any]) -> None:
        """Apply a fault plan given as data: the body of ``POST /api/faults``.

        Keys (all optional): ``reset`` (bool, applied first), ``latency_ms``,
        ``recipient_limit`` (int or null), ``reject`` and ``invalid`` (lists of
        addresses), ``fail_next`` ({"count", "status"}), ``rate_limit_next``
        ({"count", "retry_after"}), ``hang_next`` ({"count", "seconds", "accept"}),
        ``fail_always`` (a status, or null to stop), ``retry_after``,
        ``fail_lookups`` (a status for the read APIs, or null to stop).
        """
        known = {
            "reset",
            "latency_ms",
            "recipient_limit",
            "reject",
            "invalid",
            "fail_next",
            "rate_limit_next",
            "hang_next",
            "fail_always",
            "retry_after",
            "fail_lookups",
        }
        unknown = set(data) - known
        if unknown:
            raise ValueError(
                f"Unknown fault setting(s) {', '.join(sorted(unknown))}; "
                f"expected some of {', '.join(sorted(known))}."
            )
        if data.get("reset"):
            self.reset_faults()
        standing = {k: data[k] for k in ("latency_ms", "reject", "invalid") if k in data}
        if "recipient_limit" in data:
            standing["recipient_limit"] = data["recipient_limit"]
        self.set_faults(**standing)
        if "fail_next" in data:
            spec = data["fail_next"]
            self.fail_next(int(spec.get("count", 1)), status=int(spec.get("status", 503)))
        if "rate_limit_next" in data:
            spec = data["rate_limit_next"]
            self.rate_limit_next(
                int(spec.get("count", 1)), retry_after=int(spec.get("retry_after", 1))
            )
        if "hang_next" in data:
            spec = data["hang_next"]
            self.hang_next(
                int(spec.get("count", 1)),
                seconds=float(spec.get("seconds", 30)),
                accept=bool(spec.get("accept", False)),
            )
        if "fail_always" in data:
            status = data["fail_always"]
            self.fail_always(
                None if status is None else int(status),
                retry_after=int(data.get("retry_after", 1)),
            )
        if "fail_lookups" in data:
            status = data["fail_lookups"]
            self.fail_lookups(None if status is None else int(status))

    def _queue(self, count: int, fault: dict[str, Any]) -> None:
        with self._lock:
            self._faults.script.extend(dict(fault) for _ in range(count))

    # -- the send path (called from handler threads) ---------------------------------

    def _begin_call(self) -> tuple[int, dict[str, Any] | None, float, _Faults]:
        with self._lock:
            self._call_count += 1
            fault = self._faults.script.popleft() if self._faults.script else self._faults.always
            return self._call_count, fault, self._faults.latency_ms, self._faults

    def _begin_lookup(self) -> int | None:
        """Count a read API call; return the status to fail it with, if any."""
        with self._lock:
            self._lookup_count += 1
            return self._faults.lookup_status

    def _end_call(self, call: SinkCall) -> None:
        with self._lock:
            self._calls.append(call)

    def _record(self, drafts: list[dict[str, Any]], rejected: list[str]) -> list[SentMessage]:
        """Store accepted recipients atomically, so a reader never sees half a call."""
        now = time.time()
        with self._lock:
            next_id = self._last_id + 1
            self._last_id += len(drafts)
            records = []
            previous = self._records[-1] if self._records else None
            for offset, draft in enumerate(drafts):
                record = SentMessage(id=next_id + offset, received_at=now, **draft)
                if previous is not None:
                    _share(record, previous)
                records.append(record)
                previous = record
            self._records.extend(records)
            self._rejected.extend(rejected)
            self._drop_old_bodies()
            if self._persist_file is not None and records:
                for record in records:
                    self._persist_file.write(json.dumps(record.to_dict()) + "\n")
                self._persist_file.flush()
            self._lock.notify_all()
        return records

    def _drop_old_bodies(self) -> None:
        if self.keep_bodies is None:
            return
        # Walk back over the records that just left the window (a batch may push
        # several out at once) and stop at the first one already emptied.
        index = len(self._records) - self.keep_bodies - 1
        while index >= 0:
            record = self._records[index]
            if record.text is None and record.html is None:
                break
            record.text = record.html = None
            index -= 1

    def _index_after(self, since: int) -> int:
        """Index of the first record with ``id > since`` (ids are sorted)."""
        low, high = 0, len(self._records)
        while low < high:
            mid = (low + high) // 2
            if self._records[mid].id <= since:
                low = mid + 1
            else:
                high = mid
        return low

    def _load(self, path: Path) -> None:
        if not path.exists():
            return
        records = []
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    records.append(SentMessage.from_dict(json.loads(line)))
                except (ValueError, KeyError, TypeError):
                    logger.warning("Skipping unreadable line %s of %s", number, path)
        with self._lock:
            self._records = records
            if self.keep_bodies is not None:
                for record in records[: max(0, len(records) - self.keep_bodies)]:
                    record.text = record.html = None
            self._call_count = max((r.call for r in records), default=0)
            self._last_id = max((r.id for r in records), default=0)


_SHARED_FIELDS = ("esp", "from_email", "subject", "text", "html", "tags", "options")


def _share(record: SentMessage, previous: SentMessage) -> None:
    """Reuse the previous record's objects for equal values, to keep memory small.

    The messages of one mailing differ in a few values (address, unsubscribe link,
    delivery id) and agree on the rest; storing the agreeing values once keeps a
    100,000-recipient send to a few hundred bytes per record.
    """
    for name in _SHARED_FIELDS:
        mine, theirs = getattr(record, name), getattr(previous, name)
        if mine is not theirs and mine == theirs:
            setattr(record, name, theirs)
    for name in ("headers", "metadata"):
        mine, theirs = getattr(record, name), getattr(previous, name)
        if mine == theirs:
            setattr(record, name, theirs)
        else:
            setattr(
                record,
                name,
                {
                    sys.intern(key): theirs[key] if theirs.get(key) == value else value
                    for key, value in mine.items()
                },
            )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Benchmarks open many concurrent connections; the default backlog of 5 drops them.
    request_queue_size = 1024
    sink: MailSink

    def handle_error(self, request, client_address):
        # A client that dies mid-request (a killed worker) resets its connection:
        # that is the client's fault being simulated, not the sink's.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


# -- ESP dialects ------------------------------------------------------------------------


def _parse_addresses(value: str | list[str] | None) -> list[tuple[str, str]]:
    """Return [(as sent, addr-spec)] for a header value or list of values."""
    if not value:
        return []
    values = value if isinstance(value, list) else [value]
    result = []
    for name, addr in getaddresses(values):
        shown = f"{name} <{addr}>" if name else addr
        result.append((shown, addr))
    return result


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _postmark_message(
    sink_call: int, data: Any, faults: _Faults
) -> tuple[dict[str, Any], list[dict], list[str]]:
    """Check one Postmark message; return (response item, drafts to record, rejected)."""
    if not isinstance(data, dict):
        return {"ErrorCode": 402, "Message": "Received invalid JSON input."}, [], []
    if not data.get("From"):
        return {"ErrorCode": 300, "Message": "Invalid 'From' address: ''."}, [], []
    if not data.get("TextBody") and not data.get("HtmlBody"):
        return (
            {"ErrorCode": 300, "Message": "Provide either email TextBody or HtmlBody or both."},
            [],
            [],
        )
    recipients = []
    for rcpt_type in ("To", "Cc", "Bcc"):
        for shown, addr in _parse_addresses(data.get(rcpt_type)):
            if not _ADDR_SPEC.match(addr) or addr.lower() in faults.invalid:
                message = f"Invalid '{rcpt_type}' address: '{addr}'."
                return {"ErrorCode": POSTMARK_INVALID_REQUEST, "Message": message}, [], [addr]
            recipients.append((rcpt_type.lower(), shown, addr))
    if not recipients:
        return {"ErrorCode": 300, "Message": "Zero recipients specified"}, [], []
    limit = faults.limit_for(POSTMARK_MAX_RECIPIENTS)
    if len(recipients) > limit:
        message = (
            f"Invalid 'To' count: You may not send to more than {limit} recipients per message."
        )
        # Not an "Invalid 'To' address" error, so Anymail raises AnymailAPIError.
        return {"ErrorCode": POSTMARK_INVALID_REQUEST, "Message": f"Limit: {message}"}, [], []
    inactive = [addr.lower() for _, _, addr in recipients if addr.lower() in faults.reject]
    active = [r for r in recipients if r[2].lower() not in faults.reject]
    if not active:
        message = (
            "You tried to send to a recipient that has been marked as inactive.\n"
            f"Found inactive addresses: {', '.join(inactive)}.\n"
            "Inactive recipients are ones that have generated a hard bounce or a spam "
            "complaint. "
        )
        return {"ErrorCode": POSTMARK_INACTIVE_RECIPIENT, "Message": message}, [], inactive
    message_id = str(uuid.uuid4())
    headers = {h.get("Name", ""): h.get("Value", "") for h in data.get("Headers") or []}
    if data.get("ReplyTo"):
        headers["Reply-To"] = data["ReplyTo"]
    metadata = {str(k): str(v) for k, v in (data.get("Metadata") or {}).items()}
    tags = [data["Tag"]] if data.get("Tag") else []
    options = {
        k: str(data[k])
        for k in ("MessageStream", "TrackOpens", "TrackLinks", "TemplateModel")
        if k in data
    }
    drafts = [
        {
            "esp": "postmark",
            "message_id": message_id,
            "call": sink_call,
            "rcpt_type": rcpt_type,
            "to": shown,
            "address": addr.lower(),
            "from_email": data["From"],
            "subject": data.get("Subject") or "",
            "text": data.get("TextBody") or None,
            "html": data.get("HtmlBody") or None,
            "headers": headers,
            "metadata": metadata,
            "tags": tags,
            "options": options,
        }
        for rcpt_type, shown, addr in active
    ]
    reply = {
        "To": data.get("To", ""),
        "SubmittedAt": _now_iso(),
        "MessageID": message_id,
        "ErrorCode": 0,
        "Message": "OK",
    }
    if inactive:
        reply["Message"] = (
            f"Message OK, but will not deliver to these inactive addresses: "
            f"{', '.join(inactive)}. Inactive recipients are ones that have generated "
            "a hard bounce or a spam complaint."
        )
    return reply, drafts, inactive


def _check_postmark_token(sink: MailSink, handler: _Handler) -> None:
    token = handler.headers.get("X-Postmark-Server-Token")
    if not token or (sink.postmark_token is not None and token != sink.postmark_token):
        raise _Reply(
            401,
            {
                "ErrorCode": POSTMARK_BAD_TOKEN,
                "Message": "Request does not contain a valid Server token.",
            },
        )


def _handle_postmark(
    sink: MailSink, handler: _Handler, endpoint: str, call: int, faults: _Faults
) -> tuple[int, Any, list[dict], list[str], int]:
    """Return (status, body, drafts, rejected, recipients in request)."""
    _check_postmark_token(sink, handler)
    try:
        data = json.loads(handler.body or b"null")
    except ValueError:
        raise _Reply(422, {"ErrorCode": 402, "Message": "Received invalid JSON input."}) from None
    if endpoint == "email":
        reply, drafts, rejected = _postmark_message(call, data, faults)
        count = len(drafts) + len(rejected)
        return (200 if reply["ErrorCode"] == 0 else 422), reply, drafts, rejected, count
    # email/batch
    if not isinstance(data, list):
        raise _Reply(422, {"ErrorCode": 403, "Message": "A batch must be a JSON array."})
    limit = faults.limit_for(POSTMARK_MAX_BATCH)
    if len(data) > limit:
        raise _Reply(
            422,
            {
                "ErrorCode": POSTMARK_TOO_MANY_BATCH_MESSAGES,
                "Message": f"Too many batch messages: you may send up to "
                f"{limit} messages in a batch.",
            },
        )
    replies, all_drafts, all_rejected = [], [], []
    for item in data:
        reply, drafts, rejected = _postmark_message(call, item, faults)
        if reply["ErrorCode"] != 0:
            # Postmark's batch answers never carry "To" for a failed message.
            reply = {"ErrorCode": reply["ErrorCode"], "Message": reply["Message"]}
        replies.append(reply)
        all_drafts.extend(drafts)
        all_rejected.extend(rejected)
    return 200, replies, all_drafts, all_rejected, len(data)


def _form_fields(handler: _Handler) -> dict[str, list[str]]:
    """Parse an urlencoded or multipart/form-data body into {name: [values]}."""
    content_type = handler.headers.get("Content-Type", "")
    fields: dict[str, list[str]] = {}
    if content_type.startswith("multipart/form-data"):
        raw = b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + handler.body
        parsed = BytesParser(policy=HTTP).parsebytes(raw)
        for part in parsed.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if not name:
                continue
            if part.get_filename() is not None:
                fields.setdefault(f"{name}:filename", []).append(part.get_filename())
                continue
            payload = part.get_payload(decode=True) or b""
            charset = part.get_content_charset() or "utf-8"
            fields.setdefault(name, []).append(payload.decode(charset, errors="replace"))
    else:
        text = handler.body.decode("utf-8", errors="replace")
        for name, value in urllib.parse.parse_qsl(text, keep_blank_values=True):
            fields.setdefault(name, []).append(value)
    return fields


def _substitute(value: str | None, variables: dict[str, Any]) -> str | None:
    """Apply Mailgun's %recipient.KEY% substitution for one recipient."""
    if value is None or "%recipient." not in value:
        return value

    def replace(match: re.Match) -> str:
        found = variables.get(match.group(1), "")
        return found if isinstance(found, str) else json.dumps(found)

    return _RECIPIENT_VARIABLE.sub(replace, value)


def _check_mailgun_key(sink: MailSink, handler: _Handler) -> None:
    auth = handler.headers.get("Authorization", "")
    user, _, key = "", "", ""
    if auth.startswith("Basic "):
        with contextlib.suppress(ValueError):
            user, _, key = base64.b64decode(auth[6:]).decode("utf-8").partition(":")
    if (
        user != "api"
        or not key
        or (sink.mailgun_api_key is not None and key != sink.mailgun_api_key)
    ):
        raise _Reply(401, "Forbidden")


def _handle_mailgun(
    sink: MailSink, handler: _Handler, endpoint: str, call: int, faults: _Faults
) -> tuple[int, Any, list[dict], list[str], int]:
    """Return (status, body, drafts, rejected, recipients in request)."""
    _check_mailgun_key(sink, handler)
    domain = endpoint.split("/", 1)[0]
    fields = _form_fields(handler)

    def first(name: str) -> str | None:
        values = fields.get(name)
        return values[0] if values else None

    if not first("from"):
        raise _Reply(400, {"message": "'from' parameter is missing"})
    recipients = []
    for rcpt_type in ("to", "cc", "bcc"):
        for shown, addr in _parse_addresses(fields.get(rcpt_type)):
            if not _ADDR_SPEC.match(addr) or addr.lower() in faults.invalid:
                raise _Reply(
                    400,
                    {
                        "message": f"'{rcpt_type}' parameter is not a valid address. "
                        "please check documentation"
                    },
                )
            recipients.append((rcpt_type, shown, addr))
    if not any(r[0] == "to" for r in recipients):
        raise _Reply(400, {"message": "'to' parameter is missing"})
    if not (first("text") or first("html") or first("template")):
        raise _Reply(400, {"message": "Need at least one of 'text' or 'html' parameters specified"})
    limit = faults.limit_for(MAILGUN_MAX_RECIPIENTS)
    if len(recipients) > limit:
        raise _Reply(400, {"message": f"Too many recipients: the maximum is {limit} per call"})
    try:
        recipient_variables = json.loads(first("recipient-variables") or "null")
    except ValueError:
        raise _Reply(400, {"message": "recipient-variables parameter is not valid JSON"}) from None
    message_id = f"<{time.strftime('%Y%m%d%H%M%S')}.{call}.{uuid.uuid4().hex[:12]}@{domain}>"
    headers = {k[2:]: v[0] for k, v in fields.items() if k.startswith("h:")}
    metadata = {k[2:]: v[0] for k, v in fields.items() if k.startswith("v:")}
    options = {
        k: v[0] if len(v) == 1 else json.dumps(v)
        for k, v in fields.items()
        if k.startswith("o:") and k != "o:tag"
    }
    if first("template"):
        options["template"] = first("template")
    tags = list(fields.get("o:tag", []))
    to_header = ", ".join(fields.get("to", []))
    drafts, rejected = [], []
    for rcpt_type, shown, addr in recipients:
        if addr.lower() in faults.reject:
            # Mailgun accepts the call and drops a suppressed recipient afterwards.
            rejected.append(addr.lower())
            continue
        variables = {}
        if recipient_variables is not None:
            # Batch sending: each recipient gets its own copy, addressed to them alone.
            variables = recipient_variables.get(addr) or recipient_variables.get(addr.lower()) or {}
        drafts.append(
            {
                "esp": "mailgun",
                "message_id": message_id,
                "call": call,
                "rcpt_type": rcpt_type,
                "to": shown,
                "address": addr.lower(),
                "from_email": first("from"),
                "subject": _substitute(first("subject") or "", variables),
                "text": _substitute(first("text"), variables),
                "html": _substitute(first("html"), variables),
                "headers": {k: _substitute(v, variables) for k, v in headers.items()},
                "metadata": {k: _substitute(v, variables) for k, v in metadata.items()},
                "tags": tags,
                "options": options
                | ({"to_header": to_header} if recipient_variables is None else {}),
            }
        )
    return (
        200,
        {"id": message_id, "message": "Queued. Thank you."},
        drafts,
        rejected,
        len(recipients),
    )


# -- the ESPs' read APIs: "did you accept this message?" -------------------------------


def _search_time(value: str, name: str, *, postmark: bool) -> float:
    """Parse a search bound: ISO 8601 (Postmark), RFC 2822 or a Unix time (Mailgun)."""
    try:
        if postmark:
            moment = datetime.fromisoformat(value)
        elif re.fullmatch(r"\d+(\.\d+)?", value):
            return float(value)
        else:
            moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        raise _Reply(
            422 if postmark else 400,
            {"ErrorCode": POSTMARK_INVALID_REQUEST, "Message": f"Invalid '{name}' date."}
            if postmark
            else {"message": f"Invalid {name}: {value!r}"},
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _postmark_search(sink: MailSink, query: dict[str, str]) -> dict[str, Any]:
    """Postmark's outbound message search (``GET /messages/outbound``), newest first.

    Filters: ``recipient``, ``fromemail``, ``tag``, ``subject``, ``messagestream``,
    ``fromdate``/``todate`` (ISO 8601; without a zone, UTC) and any number of
    ``metadata_<key>=<value>``. ``count`` (at most 500) and ``offset`` are required.
    Every recorded message has the status "Sent".
    """

    def refuse(message: str) -> _Reply:
        return _Reply(422, {"ErrorCode": POSTMARK_INVALID_REQUEST, "Message": message})

    try:
        count, offset = int(query["count"]), int(query["offset"])
    except KeyError:
        raise refuse("The 'count' and 'offset' parameters are required.") from None
    except ValueError:
        raise refuse("The 'count' and 'offset' parameters must be integers.") from None
    if not 0 < count <= POSTMARK_MAX_SEARCH_COUNT or offset < 0:
        raise refuse(f"'count' must be between 1 and {POSTMARK_MAX_SEARCH_COUNT}.")
    if count + offset > POSTMARK_MAX_SEARCH_DEPTH:
        raise refuse(f"'count' plus 'offset' may not exceed {POSTMARK_MAX_SEARCH_DEPTH}.")
    status = query.get("status", "sent").lower()
    since = _search_time(query["fromdate"], "fromdate", postmark=True) if "fromdate" in query else 0
    until = _search_time(query["todate"], "todate", postmark=True) if "todate" in query else None
    wanted = {k.removeprefix("metadata_"): v for k, v in query.items() if k.startswith("metadata_")}

    # One Postmark message may carry several recipients (To, Cc, Bcc): one record each.
    messages: dict[str, list[SentMessage]] = {}
    for record in sink.messages(esp="postmark"):
        messages.setdefault(record.message_id, []).append(record)
    found = []
    for records in reversed(messages.values()):
        first = records[0]
        stream = first.options.get("MessageStream", "outbound")
        if status != "sent" or first.received_at < since or (until and first.received_at > until):
            continue
        if "recipient" in query and query["recipient"].strip().lower() not in {
            r.address for r in records
        }:
            continue
        if "fromemail" in query and query["fromemail"].lower() not in first.from_email.lower():
            continue
        if "tag" in query and query["tag"] not in first.tags:
            continue
        if "subject" in query and query["subject"].lower() not in first.subject.lower():
            continue
        if query.get("messagestream", stream) != stream:
            continue
        if any(first.metadata.get(key) != value for key, value in wanted.items()):
            continue
        found.append(records)

    def summary(records: list[SentMessage]) -> dict[str, Any]:
        first = records[0]
        by_type = {t: [r for r in records if r.rcpt_type == t] for t in ("to", "cc", "bcc")}
        return {
            "MessageID": first.message_id,
            "MessageStream": first.options.get("MessageStream", "outbound"),
            "Tag": first.tags[0] if first.tags else "",
            "To": [{"Email": r.address, "Name": None} for r in by_type["to"]],
            "Cc": [{"Email": r.address, "Name": None} for r in by_type["cc"]],
            "Bcc": [{"Email": r.address, "Name": None} for r in by_type["bcc"]],
            "Recipients": [r.address for r in records],
            "ReceivedAt": first.received_at_iso,
            "From": first.from_email,
            "Subject": first.subject,
            "Attachments": [],
            "Status": "Sent",
            "Metadata": first.metadata,
        }

    return {
        "TotalCount": len(found),
        "Messages": [summary(records) for records in found[offset : offset + count]],
    }


def _mailgun_events(
    sink: MailSink, domain: str, query: dict[str, str], offset: int = 0
) -> dict[str, Any]:
    """Mailgun's events API (``GET /v3/<domain>/events``): one "accepted" event per recipient.

    Filters: ``event`` ("accepted", or several joined with " OR "; only "accepted"
    events exist here), ``recipient``, ``begin`` and ``end`` (RFC 2822 or a Unix time),
    ``ascending`` (yes/no; yes by default when only ``begin`` is given) and ``limit``
    (at most 300). ``paging.next`` leads to the following page; an empty page ends it,
    as with Mailgun.
    """
    try:
        limit = int(query.get("limit", MAILGUN_MAX_EVENTS))
    except ValueError:
        raise _Reply(400, {"message": "Invalid limit"}) from None
    if not 0 < limit <= MAILGUN_MAX_EVENTS:
        raise _Reply(400, {"message": f"limit must be between 1 and {MAILGUN_MAX_EVENTS}"})
    kinds = {k.strip().lower() for k in query.get("event", "accepted").split(" OR ")}
    begin = _search_time(query["begin"], "begin", postmark=False) if "begin" in query else None
    end = _search_time(query["end"], "end", postmark=False) if "end" in query else None
    ascending = query.get("ascending", "yes" if begin is not None and end is None else "no")
    recipient = query.get("recipient", "").strip().lower()
    low, high = min(begin or 0, end or float("inf")), max(begin or 0, end or float("inf"))

    records = [
        r
        for r in sink.messages(esp="mailgun")
        if "accepted" in kinds
        and r.message_id.endswith(f"@{domain}>")
        and (not recipient or r.address == recipient)
        and low <= r.received_at <= high
    ]
    if ascending.lower() != "yes":
        records.reverse()

    def page_url(at: int) -> str:
        state = json.dumps({"query": query, "offset": max(0, at)}).encode()
        token = base64.urlsafe_b64encode(state).decode().rstrip("=")
        return f"{sink.mailgun_api_url}/{urllib.parse.quote(domain)}/events/{token}"

    items = [
        {
            "event": "accepted",
            "id": f"sink{r.id}",
            "timestamp": r.received_at,
            "log-level": "info",
            "method": "HTTP",
            "recipient": r.address,
            "recipient-domain": r.address.rpartition("@")[2],
            "tags": r.tags,
            "user-variables": r.metadata,
            "envelope": {"sender": r.from_email, "targets": r.address, "transport": "smtp"},
            "message": {
                "headers": {
                    "to": r.to,
                    "message-id": r.message_id.strip("<>"),
                    "from": r.from_email,
                    "subject": r.subject,
                },
            },
        }
        for r in records[offset : offset + limit]
    ]
    return {
        "items": items,
        "paging": {
            "first": page_url(0),
            "last": page_url(max(0, len(records) - limit)),
            "next": page_url(offset + limit),
            "previous": page_url(offset - limit),
        },
    }


def _mailgun_page(token: str) -> tuple[dict[str, str], int]:
    """Return the query and offset a ``paging`` link's token stands for."""
    try:
        state = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return {str(k): str(v) for k, v in state["query"].items()}, int(state["offset"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise _Reply(400, {"message": "Invalid page token"}) from None


# -- HTTP ----------------------------------------------------------------------------

_PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; frame-src 'self'; img-src data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# The email itself: no scripts, no network, an opaque origin; links open in a new tab.
_EMAIL_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data: cid:; font-src data:; "
    "base-uri 'self'; form-action 'none'; frame-ancestors 'self'; "
    "sandbox allow-popups allow-popups-to-escape-sandbox"
)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive: Anymail reuses one connection per send
    server_version = "RallyMailSink/1"
    body: bytes = b""

    def log_message(self, format, *args):
        # Paths may carry addresses (?to=); keep request logs out of the output.
        pass

    # -- plumbing --

    def _read_body(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(length) if length else b""

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        if isinstance(data, str):
            self._send(status, data.encode(), "text/plain; charset=utf-8", headers)
        else:
            body = json.dumps(data).encode()
            self._send(status, body, "application/json", headers)

    def _html(self, status: int, page: str, csp: str = _PAGE_CSP) -> None:
        self._send(
            status, page.encode(), "text/html; charset=utf-8", {"Content-Security-Policy": csp}
        )

    @property
    def sink(self) -> MailSink:
        return self.server.sink

    # -- routing --

    def do_GET(self):
        self._read_body()
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        path = url.path
        try:
            if path == "/postmark/messages/outbound":
                return self._lookup("postmark", lambda: _postmark_search(self.sink, query))
            if match := re.fullmatch(r"/mailgun/v3/([^/]+)/events(?:/([A-Za-z0-9_-]+))?", path):
                domain = urllib.parse.unquote(match.group(1))
                if match.group(2):
                    page_query, offset = _mailgun_page(match.group(2))
                    return self._lookup(
                        "mailgun", lambda: _mailgun_events(self.sink, domain, page_query, offset)
                    )
                return self._lookup("mailgun", lambda: _mailgun_events(self.sink, domain, query))
            if path == "/":
                return self._html(200, _render_index(self.sink, query))
            if match := re.fullmatch(r"/messages/(\d+)/?", path):
                record = self._get_record(int(match.group(1)), page=True)
                return self._html(200, _render_message(record))
            if match := re.fullmatch(r"/messages/(\d+)/html", path):
                record = self._get_record(int(match.group(1)), page=True)
                return self._html(200, _email_document(record), csp=_EMAIL_CSP)
            if path == "/api/messages":
                return self._json(200, self._api_messages(query))
            if match := re.fullmatch(r"/api/messages/(\d+)", path):
                return self._json(200, self._get_record(int(match.group(1))).to_dict())
            if path == "/api/recipients":
                recipients = self.sink.recipients()
                return self._json(200, {"count": len(recipients), "recipients": recipients})
            if path == "/api/calls":
                return self._json(200, [c.to_dict() for c in self.sink.calls()])
            if path == "/api/stats":
                return self._json(200, self.sink.stats())
            if path == "/api/faults":
                return self._json(200, self.sink.faults)
            if path == "/api/rejected":
                return self._json(200, self.sink.rejected())
            if path in ("/postmark", "/postmark/", "/mailgun/v3", "/mailgun/v3/"):
                return self._json(200, {"message": "Rally mail sink: POST messages here."})
            self._json(404, {"message": f"Nothing at {path}."})
        except _Reply as reply:
            if path.startswith(("/api/", "/postmark/", "/mailgun/")):
                self._json(reply.status, reply.body, reply.headers)
            else:
                self._html(reply.status, _page("Not found", f"<p>{html.escape(reply.body)}</p>"))

    do_HEAD = do_GET

    def do_POST(self):
        self._read_body()
        path = urllib.parse.urlsplit(self.path).path
        try:
            if path in ("/postmark/email", "/postmark/email/batch"):
                return self._send_call("postmark", path.removeprefix("/postmark/"))
            if match := re.fullmatch(r"/mailgun/v3/([^/]+)/messages", path):
                domain = urllib.parse.unquote(match.group(1))
                return self._send_call("mailgun", f"{domain}/messages")
            if path == "/api/clear":
                self.sink.clear()
                return self._json(200, {"cleared": True})
            if path == "/api/faults":
                try:
                    self.sink.configure(json.loads(self.body or b"{}"))
                except (ValueError, TypeError, AttributeError) as error:
                    raise _Reply(400, {"message": str(error)}) from None
                return self._json(200, self.sink.faults)
            if path.startswith("/postmark/"):
                raise _Reply(
                    404,
                    {"ErrorCode": 404, "Message": f"The mail sink does not simulate {path}."},
                )
            raise _Reply(404, {"message": f"Nothing at {path}."})
        except _Reply as reply:
            self._json(reply.status, reply.body, reply.headers)

    # -- API helpers --

    def _lookup(self, esp: str, answer: Callable[[], Any]) -> None:
        """Answer a read API call: authenticate, apply the lookup fault, then ``answer()``."""
        if esp == "postmark":
            _check_postmark_token(self.sink, self)
        else:
            _check_mailgun_key(self.sink, self)
        status = self.sink._begin_lookup()
        if status is not None:
            raise _Reply(status, _error_body(esp, status))
        self._json(200, answer())

    def _get_record(self, id: int, *, page: bool = False) -> SentMessage:
        record = self.sink.message(id)
        if record is None:
            raise _Reply(404, f"No message {id}." if page else {"message": f"No message {id}."})
        return record

    def _api_messages(self, query: dict[str, str]) -> list[dict[str, Any]]:
        try:
            since = int(query["since"]) if query.get("since") else None
            after = None
            if query.get("after"):
                after = datetime.fromisoformat(query["after"]).timestamp()
            limit = int(query["limit"]) if query.get("limit") else None
        except ValueError:
            raise _Reply(
                400,
                {"message": "since and limit must be integers; after an ISO 8601 time."},
            ) from None
        records = self.sink.messages(
            to=query.get("to") or None, since=since, after=after, esp=query.get("esp") or None
        )
        if limit is not None:
            records = records[:limit]
        bodies = query.get("bodies", "1") not in ("0", "false", "no")
        return [r.to_dict(bodies=bodies) for r in records]

    def _send_call(self, esp: str, endpoint: str) -> None:
        sink = self.sink
        started = time.time()
        call, fault, latency_ms, faults = sink._begin_call()
        accepted, requested = 0, 0
        try:
            if latency_ms:
                time.sleep(latency_ms / 1000)
            if fault and fault["kind"] == "hang":
                time.sleep(fault["seconds"])
                if not fault["accept"]:
                    raise _Reply(504, {"message": "Gateway timeout (simulated)."})
            if fault and fault["kind"] == "status":
                raise _Reply(fault["status"], _error_body(esp, fault["status"]))
            if fault and fault["kind"] == "rate_limit":
                raise _Reply(429, _error_body(esp, 429), {"Retry-After": str(fault["retry_after"])})
            handle = _handle_postmark if esp == "postmark" else _handle_mailgun
            status, body, drafts, rejected, requested = handle(sink, self, endpoint, call, faults)
            accepted = len(sink._record(drafts, rejected))
            reply = _Reply(status, body)
        except _Reply as refusal:
            reply = refusal
        # Log the call before answering, so a client that has its answer sees the call.
        sink._end_call(
            SinkCall(
                number=call,
                esp=esp,
                endpoint=endpoint,
                status=reply.status,
                recipients=requested,
                accepted=accepted,
                started_at=started,
                duration=time.time() - started,
            )
        )
        self._json(reply.status, reply.body, reply.headers)


def _error_body(esp: str, status: int) -> Any:
    if status == 429:
        if esp == "postmark":
            return {"ErrorCode": POSTMARK_RATE_LIMIT, "Message": "Rate limit exceeded."}
        return {"message": "Rate limit exceeded. Try again later."}
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    if esp == "postmark":
        return {"ErrorCode": status, "Message": f"{phrase} (simulated)."}
    return {"message": f"{phrase} (simulated)."}


# -- the web UI --------------------------------------------------------------------------

_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1b1b1b;background:#fafafa}
header{background:#22303c;color:#fff;padding:.8rem 1.2rem}
header a{color:#fff}
main{padding:1rem 1.2rem;max-width:72rem}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:.4rem .6rem;border-bottom:1px solid #ddd;vertical-align:top}
th{background:#eef1f4}
a{color:#0b5cad}
iframe{width:100%;height:36rem;border:1px solid #bbb;background:#fff}
pre{white-space:pre-wrap;background:#fff;border:1px solid #ddd;padding:.8rem}
dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem}
dt{font-weight:600}
dd{margin:0;word-break:break-all}
.muted{color:#5c6670}
"""


def _page(title: str, body: str, *, head: str = "") -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"{head}<title>{html.escape(title)} · Rally mail sink</title><style>{_STYLE}</style></head>"
        "<body><header><a href='/'><strong>Rally mail sink</strong></a> "
        "<span>every email Rally sends in development lands here; none leaves this machine"
        f"</span></header><main>{body}</main></body></html>"
    )


def _render_index(sink: MailSink, query: dict[str, str]) -> str:
    try:
        limit = max(1, min(int(query.get("limit", 200)), 5000))
    except ValueError:
        limit = 200
    to = query.get("to") or None
    records = sink.messages(to=to)
    total = len(records)
    rows = []
    for record in reversed(records[-limit:]):
        when = datetime.fromtimestamp(record.received_at).strftime("%Y-%m-%d %H:%M:%S")
        rows.append(
            "<tr>"
            f"<td>{html.escape(when)}</td>"
            f"<td>{html.escape(record.to)}</td>"
            f"<td><a href='/messages/{record.id}/'>{html.escape(record.subject or '(no subject)')}"
            "</a></td>"
            f"<td class='muted'>{html.escape(record.esp)}</td>"
            "</tr>"
        )
    filtered = f" to {html.escape(to)} (<a href='/'>show all</a>)" if to else ""
    if not rows:
        listing = "<p>No email yet. Anything Rally sends will appear here.</p>"
    else:
        listing = (
            "<table><thead><tr><th scope='col'>Received</th><th scope='col'>To</th>"
            "<th scope='col'>Subject</th><th scope='col'>Via</th></tr></thead><tbody>"
            + "".join(rows)
            + "</tbody></table>"
        )
    more = f"<p class='muted'>Showing the newest {limit}.</p>" if total > limit else ""
    return _page(
        "Messages",
        f"<h1>{total} message{'s' if total != 1 else ''}{filtered}</h1>"
        "<p class='muted'>Newest first; this page refreshes every 10 seconds.</p>"
        f"{listing}{more}",
        # New mail shows up without a click; meta refresh needs no script.
        head="<meta http-equiv='refresh' content='10'>",
    )


class _LinkCollector(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            href = dict(attrs).get("href")
            if href and href not in self.links:
                self.links.append(href)


def _links(record: SentMessage) -> list[str]:
    collector = _LinkCollector()
    if record.html:
        collector.feed(record.html)
    for found in re.findall(r"https?://[^\s<>\"')\]]+", record.text or ""):
        if found not in collector.links:
            collector.links.append(found)
    return [link for link in collector.links if link.startswith(("http://", "https://"))]


def _render_message(record: SentMessage) -> str:
    esc = html.escape
    when = datetime.fromtimestamp(record.received_at).strftime("%Y-%m-%d %H:%M:%S")
    summary = [
        ("From", record.from_email),
        ("To", record.to),
        ("Subject", record.subject),
        ("Received", f"{when} via {record.esp}, API call {record.call}"),
        ("Message id", record.message_id),
    ]
    summary += [(name, value) for name, value in record.headers.items()]
    summary += [(f"Metadata {k}", v) for k, v in record.metadata.items()]
    if record.tags:
        summary.append(("Tags", ", ".join(record.tags)))
    details = "".join(f"<dt>{esc(k)}</dt><dd>{esc(str(v))}</dd>" for k, v in summary)
    links = _links(record)
    link_list = ""
    if links:
        items = "".join(
            f"<li><a href='{esc(link)}' target='_blank' rel='noopener noreferrer'>"
            f"{esc(link)}</a></li>"
            for link in links
        )
        link_list = f"<h2>Links</h2><ul class='links'>{items}</ul>"
    if record.html is not None:
        html_part = (
            "<h2>HTML</h2><iframe title='HTML part' sandbox='allow-popups "
            "allow-popups-to-escape-sandbox' referrerpolicy='no-referrer' "
            f"src='/messages/{record.id}/html'></iframe>"
        )
    else:
        html_part = "<h2>HTML</h2><p class='muted'>No HTML part (or no longer kept).</p>"
    text_part = (
        f"<h2>Text</h2><pre>{esc(record.text)}</pre>"
        if record.text is not None
        else "<h2>Text</h2><p class='muted'>No text part (or no longer kept).</p>"
    )
    return _page(
        record.subject or "Message",
        f"<p><a href='/'>← All messages</a></p><h1>{esc(record.subject or '(no subject)')}</h1>"
        f"<dl>{details}</dl>{link_list}{html_part}{text_part}",
    )


def _email_document(record: SentMessage) -> str:
    if record.html is None:
        return "<!doctype html><p>No HTML part.</p>"
    # Served under a sandboxing CSP in a sandboxed iframe; the base element only makes
    # links open in a new tab instead of inside the frame.
    return "<base target='_blank'>" + record.html


# -- client for a sink in another process --------------------------------------------


class MailSinkClient:
    """Read and configure a mail sink running in another process, over its HTTP API.

    Mirrors :class:`MailSink`'s reading and fault methods::

        sink = MailSinkClient("http://127.0.0.1:18100")
        sink.clear()
        sink.configure({"latency_ms": 100, "fail_next": {"count": 2, "status": 503}})
        sink.wait_for(500, timeout=30)
        assert Counter(sink.recipients()).most_common(1)[0][1] == 1
    """

    def __init__(self, url: str, *, timeout: float = 30):
        self.url = url.rstrip("/")
        self.timeout = timeout

    @property
    def postmark_api_url(self) -> str:
        return f"{self.url}/postmark/"

    @property
    def mailgun_api_url(self) -> str:
        return f"{self.url}/mailgun/v3"

    def _request(self, path: str, data: Any = None) -> Any:
        body = None if data is None else json.dumps(data).encode()
        request = urllib.request.Request(  # noqa: S310 (a loopback URL we were given)
            self.url + path,
            data=body,
            method="GET" if data is None else "POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise ValueError(f"Mail sink answered {error.code}: {error.read()!r}") from error

    def messages(
        self,
        *,
        to: str | None = None,
        since: int | None = None,
        bodies: bool = True,
        limit: int | None = None,
    ) -> list[SentMessage]:
        """Return recorded messages, oldest first (see :meth:`MailSink.messages`)."""
        query = {"to": to, "since": since, "limit": limit, "bodies": None if bodies else "0"}
        encoded = urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        return [SentMessage.from_dict(d) for d in self._request(f"/api/messages?{encoded}")]

    def recipients(self) -> list[str]:
        return self._request("/api/recipients")["recipients"]

    def rejected(self) -> list[str]:
        return self._request("/api/rejected")

    def calls(self) -> list[SinkCall]:
        return [SinkCall(**c) for c in self._request("/api/calls")]

    def count(self) -> int:
        return self._request("/api/stats")["messages"]

    def stats(self) -> dict[str, Any]:
        return self._request("/api/stats")

    @property
    def faults(self) -> dict[str, Any]:
        return self._request("/api/faults")

    def clear(self) -> None:
        self._request("/api/clear", {})

    def configure(self, data: dict[str, Any]) -> dict[str, Any]:
        """Apply a fault plan (see :meth:`MailSink.configure`); return the new plan."""
        return self._request("/api/faults", data)

    def wait_for(self, count: int, *, timeout: float = 10, poll: float = 0.05) -> bool:
        """Poll until at least ``count`` records are held; return whether they are."""
        deadline = time.monotonic() + timeout
        while True:
            if self.count() >= count:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll)


# -- command line ------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the sink's options to ``parser`` (shared by ``manage.py mailsink``)."""
    parser.add_argument("--host", default="127.0.0.1", help="Address to listen on.")
    parser.add_argument("--port", type=int, default=8025, help="Port to listen on (0: any).")
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0,
        help="Delay every send API call by this many milliseconds (default 0).",
    )
    parser.add_argument(
        "--recipient-limit",
        type=int,
        default=None,
        help="Refuse send calls carrying more recipients (default: the ESP's own limits).",
    )
    parser.add_argument(
        "--reject",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="Refuse this address as an inactive recipient (repeatable).",
    )
    parser.add_argument(
        "--keep-bodies",
        type=int,
        default=10_000,
        help="Keep the HTML and text of only the newest N messages (default 10000).",
    )


def sink_from_options(options: dict[str, Any], *, persist_path: Path | None) -> MailSink:
    """Build a sink from parsed :func:`add_arguments` options."""
    sink = MailSink(
        host=options["host"],
        port=options["port"],
        latency_ms=options["latency_ms"],
        keep_bodies=options["keep_bodies"],
        persist_path=persist_path,
    )
    sink.set_faults(recipient_limit=options["recipient_limit"], reject=options["reject"])
    return sink


def describe(sink: MailSink) -> str:
    """Return the start-up banner: where the UI and the two APIs are."""
    return (
        f"Mail sink at {sink.url}/ ({sink.count()} messages kept)\n"
        f"  Postmark API: {sink.postmark_api_url}  Mailgun API: {sink.mailgun_api_url}"
    )


def main(argv: list[str] | None = None) -> None:
    """Run a sink without Django: ``python -m mailings.mailsink --port 18100``."""
    parser = argparse.ArgumentParser(prog="python -m mailings.mailsink", description=__doc__)
    add_arguments(parser)
    parser.add_argument(
        "--persist", type=Path, default=None, help="Append messages to this JSON-lines file."
    )
    options = vars(parser.parse_args(argv))
    sink = sink_from_options(options, persist_path=options["persist"])
    with contextlib.suppress(KeyboardInterrupt):
        sink.serve_forever(on_ready=lambda s: print(describe(s), flush=True))


if __name__ == "__main__":
    main()
