"""What the sink keeps: one record per accepted recipient, one row per send API call."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


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


_SHARED_FIELDS = ("esp", "from_email", "subject", "text", "html", "tags", "options")


def share(record: SentMessage, previous: SentMessage) -> None:
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
