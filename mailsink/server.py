"""HTTP: route each request to the ESP simulator, the control API or the pages."""

from __future__ import annotations

import html
import json
import re
import sys
import time
import urllib.parse
from collections.abc import Callable
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from mailsink.pages import (
    EMAIL_CSP,
    PAGE_CSP,
    email_document,
    render_index,
    render_message,
    render_page,
)
from mailsink.records import SentMessage, SinkCall
from mailsink.simulator import (
    Reply,
    check_mailgun_key,
    check_postmark_token,
    error_body,
    handle_mailgun,
    handle_postmark,
    mailgun_events,
    mailgun_page,
    postmark_search,
)

if TYPE_CHECKING:
    from mailsink.sink import MailSink


class Server(ThreadingHTTPServer):
    daemon_threads = True
    # Benchmarks open many concurrent connections; the default backlog of 5 drops them.
    request_queue_size = 1024
    sink: MailSink

    def handle_error(self, request, client_address):
        # A client that dies mid-request (a killed worker) resets its connection:
        # that is the client's fault being simulated, not the sink's.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    server: Server
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

    def _html(self, status: int, page: str, csp: str = PAGE_CSP) -> None:
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
                return self._lookup("postmark", lambda: postmark_search(self.sink, query))
            if match := re.fullmatch(r"/mailgun/v3/([^/]+)/events(?:/([A-Za-z0-9_-]+))?", path):
                domain = urllib.parse.unquote(match.group(1))
                if match.group(2):
                    page_query, offset = mailgun_page(match.group(2))
                    return self._lookup(
                        "mailgun", lambda: mailgun_events(self.sink, domain, page_query, offset)
                    )
                return self._lookup("mailgun", lambda: mailgun_events(self.sink, domain, query))
            if path == "/":
                return self._html(200, render_index(self.sink, query))
            if match := re.fullmatch(r"/messages/(\d+)/?", path):
                record = self._get_record(int(match.group(1)), page=True)
                return self._html(200, render_message(record))
            if match := re.fullmatch(r"/messages/(\d+)/html", path):
                record = self._get_record(int(match.group(1)), page=True)
                return self._html(200, email_document(record), csp=EMAIL_CSP)
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
        except Reply as reply:
            if path.startswith(("/api/", "/postmark/", "/mailgun/")):
                self._json(reply.status, reply.body, reply.headers)
            else:
                not_found = render_page("Not found", f"<p>{html.escape(reply.body)}</p>")
                self._html(reply.status, not_found)

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
                    raise Reply(400, {"message": str(error)}) from None
                return self._json(200, self.sink.faults)
            if path.startswith("/postmark/"):
                raise Reply(
                    404,
                    {"ErrorCode": 404, "Message": f"The mail sink does not simulate {path}."},
                )
            raise Reply(404, {"message": f"Nothing at {path}."})
        except Reply as reply:
            self._json(reply.status, reply.body, reply.headers)

    # -- API helpers --

    def _lookup(self, esp: str, answer: Callable[[], Any]) -> None:
        """Answer a read API call: authenticate, apply the lookup fault, then ``answer()``."""
        if esp == "postmark":
            check_postmark_token(self.sink, self)
        else:
            check_mailgun_key(self.sink, self)
        status = self.sink._begin_lookup()
        if status is not None:
            raise Reply(status, error_body(esp, status))
        self._json(200, answer())

    def _get_record(self, id: int, *, page: bool = False) -> SentMessage:
        record = self.sink.message(id)
        if record is None:
            raise Reply(404, f"No message {id}." if page else {"message": f"No message {id}."})
        return record

    def _api_messages(self, query: dict[str, str]) -> list[dict[str, Any]]:
        try:
            since = int(query["since"]) if query.get("since") else None
            after = None
            if query.get("after"):
                after = datetime.fromisoformat(query["after"]).timestamp()
            limit = int(query["limit"]) if query.get("limit") else None
        except ValueError:
            raise Reply(
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
                    raise Reply(504, {"message": "Gateway timeout (simulated)."})
            if fault and fault["kind"] == "status":
                raise Reply(fault["status"], error_body(esp, fault["status"]))
            if fault and fault["kind"] == "rate_limit":
                raise Reply(429, error_body(esp, 429), {"Retry-After": str(fault["retry_after"])})
            handle = handle_postmark if esp == "postmark" else handle_mailgun
            status, body, drafts, rejected, requested = handle(sink, self, endpoint, call, faults)
            accepted = len(sink._record(drafts, rejected))
            reply = Reply(status, body)
        except Reply as refusal:
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
