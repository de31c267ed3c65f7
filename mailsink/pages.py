"""The web page showing received mail: a list of messages and one page per message."""

from __future__ import annotations

import html
import re
from datetime import datetime
from html.parser import HTMLParser
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailsink.records import SentMessage
    from mailsink.sink import MailSink

PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; frame-src 'self'; img-src data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# The email itself: no scripts, no network, an opaque origin; links open in a new tab.
EMAIL_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data: cid:; font-src data:; "
    "base-uri 'self'; form-action 'none'; frame-ancestors 'self'; "
    "sandbox allow-popups allow-popups-to-escape-sandbox"
)

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


def render_page(title: str, body: str, *, head: str = "") -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"{head}<title>{html.escape(title)} · Rally mail sink</title><style>{_STYLE}</style></head>"
        "<body><header><a href='/'><strong>Rally mail sink</strong></a> "
        "<span>every email Rally sends in development lands here; none leaves this machine"
        f"</span></header><main>{body}</main></body></html>"
    )


def render_index(sink: MailSink, query: dict[str, str]) -> str:
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
    return render_page(
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


def render_message(record: SentMessage) -> str:
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
    return render_page(
        record.subject or "Message",
        f"<p><a href='/'>← All messages</a></p><h1>{esc(record.subject or '(no subject)')}</h1>"
        f"<dl>{details}</dl>{link_list}{html_part}{text_part}",
    )


def email_document(record: SentMessage) -> str:
    if record.html is None:
        return "<!doctype html><p>No HTML part.</p>"
    # Served under a sandboxing CSP in a sandboxed iframe; the base element only makes
    # links open in a new tab instead of inside the frame.
    return "<base target='_blank'>" + record.html
