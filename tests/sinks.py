"""
The ESP simulator (mailings.mailsink) plus the two read APIs real ESPs offer
for finding a message already sent: Postmark's outbound message search and
Mailgun's events API. The sending engine asks them about a delivery whose
worker died mid-call (mailings.esp.accepted_message_id).
"""

import re
import urllib.parse

from mailings import mailsink


class _LookupHandler(mailsink._Handler):
    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        if url.path == "/postmark/messages/outbound":
            self._read_body()
            if not self.headers.get("X-Postmark-Server-Token"):
                return self._json(401, {"ErrorCode": 10, "Message": "No token."})
            return self._json(200, self._postmark_search(query))
        if re.fullmatch(r"/mailgun/v3/[^/]+/events", url.path):
            self._read_body()
            if not self.headers.get("Authorization", "").startswith("Basic "):
                return self._json(401, {"message": "Forbidden"})
            return self._json(200, self._mailgun_events(query))
        return super().do_GET()

    def _postmark_search(self, query):
        wanted = {
            k.removeprefix("metadata_"): v for k, v in query.items() if k.startswith("metadata_")
        }
        records = self.sink.messages(to=query.get("recipient") or None, esp="postmark")
        found = [r for r in records if all(r.metadata.get(k) == v for k, v in wanted.items())]
        count = int(query.get("count", 50))
        return {
            "TotalCount": len(found),
            "Messages": [
                {"MessageID": r.message_id, "Recipients": [r.address], "Metadata": r.metadata}
                for r in found[:count]
            ],
        }

    def _mailgun_events(self, query):
        records = self.sink.messages(to=query.get("recipient") or None, esp="mailgun")
        return {
            "items": [
                {
                    "event": "accepted",
                    "recipient": r.address,
                    "user-variables": r.metadata,
                    "message": {"headers": {"message-id": r.message_id.strip("<>")}},
                }
                for r in records
            ],
            "paging": {},
        }


class LookupMailSink(mailsink.MailSink):
    """A MailSink that also answers Postmark's message search and Mailgun's events API."""

    def _open(self):
        super()._open()
        self._server.RequestHandlerClass = _LookupHandler
