"""A loopback email service provider: Rally's local mail sink and ESP simulator.

A development and test tool, not part of the apps: it imports neither Django nor
``crm`` and ``mailings``, only the standard library, so a benchmark can run it in a
process of its own. One small HTTP server plays two parts:

* In development (``make run`` starts ``python -m mailsink --port 8025``) it is the
  zero-setup mail sink: the default settings point Anymail's real Postmark backend
  at it, it keeps every email Rally sends and shows them at ``/``.
* In tests and benchmarks it stands in for the ESP: it speaks enough of Postmark's
  and Mailgun's send APIs that Anymail's real backends work unchanged (only the API
  URL differs), records one :class:`SentMessage` per recipient, and injects the
  faults real ESPs produce (latency, 5xx, 429 with Retry-After, hangs, per-call
  recipient limits, refused addresses). It also answers the two read APIs the
  sending engine uses to ask whether a message whose answer it lost was accepted:
  Postmark's outbound message search and Mailgun's events API.

Modules:

* ``sink.py``: :class:`MailSink`, the in-process API: start and stop, read what
  was received, plan faults. All state lives here, behind one lock.
* ``records.py``: :class:`SentMessage` (one accepted recipient) and
  :class:`SinkCall` (one send API call).
* ``faults.py``: the fault plan a sink applies to its send calls.
* ``simulator.py``: the ESP simulator: Postmark's and Mailgun's send APIs, their
  credentials checks, refusals and error bodies, and their read APIs (message
  search, events).
* ``server.py``: the HTTP server and its routing to the simulator, the control API
  (``/api/...``) and the pages.
* ``pages.py``: the web page listing received mail, and one page per message.
* ``client.py``: :class:`MailSinkClient`, for a sink running in another process.
* ``__main__.py``: the command line, ``python -m mailsink --help``.

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

``python -m mailsink --port 18100 --latency-ms 100`` runs one from the command line.
"""

from mailsink.client import MailSinkClient
from mailsink.records import SentMessage, SinkCall
from mailsink.sink import MailSink

__all__ = ["MailSink", "MailSinkClient", "SentMessage", "SinkCall"]
