"""The ESP simulator: Postmark's and Mailgun's send and read APIs, and their refusals.

Each handler checks a call as the ESP does and returns what to answer and what to
record; the HTTP server (:mod:`mailsink.server`) applies the fault plan around it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import time
import urllib.parse
import uuid
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import HTTP
from email.utils import getaddresses, parsedate_to_datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from mailsink.faults import Faults
from mailsink.records import SentMessage

if TYPE_CHECKING:
    from mailsink.server import Handler
    from mailsink.sink import MailSink


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


class Reply(Exception):
    """Answer the current request with this status, JSON body and headers."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None):
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


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
    sink_call: int, data: Any, faults: Faults
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


def check_postmark_token(sink: MailSink, handler: Handler) -> None:
    token = handler.headers.get("X-Postmark-Server-Token")
    if not token or (sink.postmark_token is not None and token != sink.postmark_token):
        raise Reply(
            401,
            {
                "ErrorCode": POSTMARK_BAD_TOKEN,
                "Message": "Request does not contain a valid Server token.",
            },
        )


def handle_postmark(
    sink: MailSink, handler: Handler, endpoint: str, call: int, faults: Faults
) -> tuple[int, Any, list[dict], list[str], int]:
    """Return (status, body, drafts, rejected, recipients in request)."""
    check_postmark_token(sink, handler)
    try:
        data = json.loads(handler.body or b"null")
    except ValueError:
        raise Reply(422, {"ErrorCode": 402, "Message": "Received invalid JSON input."}) from None
    if endpoint == "email":
        reply, drafts, rejected = _postmark_message(call, data, faults)
        count = len(drafts) + len(rejected)
        return (200 if reply["ErrorCode"] == 0 else 422), reply, drafts, rejected, count
    # email/batch
    if not isinstance(data, list):
        raise Reply(422, {"ErrorCode": 403, "Message": "A batch must be a JSON array."})
    limit = faults.limit_for(POSTMARK_MAX_BATCH)
    if len(data) > limit:
        raise Reply(
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


def _form_fields(handler: Handler) -> dict[str, list[str]]:
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


def check_mailgun_key(sink: MailSink, handler: Handler) -> None:
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
        raise Reply(401, "Forbidden")


def handle_mailgun(
    sink: MailSink, handler: Handler, endpoint: str, call: int, faults: Faults
) -> tuple[int, Any, list[dict], list[str], int]:
    """Return (status, body, drafts, rejected, recipients in request)."""
    check_mailgun_key(sink, handler)
    domain = endpoint.split("/", 1)[0]
    fields = _form_fields(handler)

    def first(name: str) -> str | None:
        values = fields.get(name)
        return values[0] if values else None

    if not first("from"):
        raise Reply(400, {"message": "'from' parameter is missing"})
    recipients = []
    for rcpt_type in ("to", "cc", "bcc"):
        for shown, addr in _parse_addresses(fields.get(rcpt_type)):
            if not _ADDR_SPEC.match(addr) or addr.lower() in faults.invalid:
                raise Reply(
                    400,
                    {
                        "message": f"'{rcpt_type}' parameter is not a valid address. "
                        "please check documentation"
                    },
                )
            recipients.append((rcpt_type, shown, addr))
    if not any(r[0] == "to" for r in recipients):
        raise Reply(400, {"message": "'to' parameter is missing"})
    if not (first("text") or first("html") or first("template")):
        raise Reply(400, {"message": "Need at least one of 'text' or 'html' parameters specified"})
    limit = faults.limit_for(MAILGUN_MAX_RECIPIENTS)
    if len(recipients) > limit:
        raise Reply(400, {"message": f"Too many recipients: the maximum is {limit} per call"})
    try:
        recipient_variables = json.loads(first("recipient-variables") or "null")
    except ValueError:
        raise Reply(400, {"message": "recipient-variables parameter is not valid JSON"}) from None
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
        raise Reply(
            422 if postmark else 400,
            {"ErrorCode": POSTMARK_INVALID_REQUEST, "Message": f"Invalid '{name}' date."}
            if postmark
            else {"message": f"Invalid {name}: {value!r}"},
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def postmark_search(sink: MailSink, query: dict[str, str]) -> dict[str, Any]:
    """Postmark's outbound message search (``GET /messages/outbound``), newest first.

    Filters: ``recipient``, ``fromemail``, ``tag``, ``subject``, ``messagestream``,
    ``fromdate``/``todate`` (ISO 8601; without a zone, UTC) and any number of
    ``metadata_<key>=<value>``. ``count`` (at most 500) and ``offset`` are required.
    Every recorded message has the status "Sent".
    """

    def refuse(message: str) -> Reply:
        return Reply(422, {"ErrorCode": POSTMARK_INVALID_REQUEST, "Message": message})

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


def mailgun_events(
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
        raise Reply(400, {"message": "Invalid limit"}) from None
    if not 0 < limit <= MAILGUN_MAX_EVENTS:
        raise Reply(400, {"message": f"limit must be between 1 and {MAILGUN_MAX_EVENTS}"})
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


def mailgun_page(token: str) -> tuple[dict[str, str], int]:
    """Return the query and offset a ``paging`` link's token stands for."""
    try:
        state = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return {str(k): str(v) for k, v in state["query"].items()}, int(state["offset"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise Reply(400, {"message": "Invalid page token"}) from None


def error_body(esp: str, status: int) -> Any:
    if status == 429:
        if esp == "postmark":
            return {"ErrorCode": POSTMARK_RATE_LIMIT, "Message": "Rate limit exceeded."}
        return {"message": "Rate limit exceeded. Try again later."}
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    if esp == "postmark":
        return {"ErrorCode": status, "Message": f"{phrase} (simulated)."}
    return {"message": f"{phrase} (simulated)."}
