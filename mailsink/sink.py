"""The sink itself: its records, its fault plan and its life as a loopback server."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mailsink.faults import Faults, make_fault
from mailsink.records import SentMessage, SinkCall, share
from mailsink.server import Handler, Server

logger = logging.getLogger(__name__)

_UNSET = object()


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
        self._faults = Faults(latency_ms)
        self._records: list[SentMessage] = []
        self._rejected: list[str] = []
        self._calls: list[SinkCall] = []
        self._call_count = 0
        self._lookup_count = 0
        self._last_id = 0  # record ids are never reused, even after clear()
        self._server: Server | None = None
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
        self._server = Server((self.host, self.requested_port), Handler)
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
            self._faults = Faults(self._faults.latency_ms)
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
        self._queue(count, make_fault("status", status=status))

    def rate_limit_next(self, count: int = 1, *, retry_after: int = 1) -> None:
        """Answer the next ``count`` send calls 429 with ``Retry-After: retry_after``."""
        self._queue(count, make_fault("rate_limit", retry_after=retry_after))

    def hang_next(self, count: int = 1, *, seconds: float = 30, accept: bool = False) -> None:
        """Hold the next ``count`` send calls for ``seconds`` before answering.

        With ``accept=False`` the held call records nothing and then answers 504 (the
        client has usually timed out by then). ``accept=True`` records the message
        and answers normally after the delay, like an ESP that accepted the mail
        while the client gave up: the window in which a retry sends twice.
        """
        self._queue(count, make_fault("hang", seconds=seconds, accept=accept))

    def fail_always(self, status: int | None = 503, *, retry_after: int = 1) -> None:
        """Answer every send call with ``status`` until called with ``None``.

        ``status=429`` answers with ``Retry-After: retry_after``.
        """
        with self._lock:
            if status is None:
                self._faults.always = None
            elif status == 429:
                self._faults.always = make_fault("rate_limit", retry_after=retry_after)
            else:
                self._faults.always = make_fault("status", status=status)

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
            self._faults = Faults(self._faults.latency_ms)

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

    def _begin_call(self) -> tuple[int, dict[str, Any] | None, float, Faults]:
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
                    share(record, previous)
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
