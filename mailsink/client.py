"""Read and configure a sink running in another process (a worker's, a benchmark's)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from mailsink.records import SentMessage, SinkCall


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
