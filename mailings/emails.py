"""
Building newsletter messages.

A mailing is prepared once per worker process: its blocks are rendered in
the charity's email template by mailings.composer.render (MJML to responsive
HTML, and a plain-text part made from the same blocks unless staff wrote
one), and the result is split into literal text and merge fields. Each recipient then
costs only a string join, so a worker renders thousands of messages a second.

Merge fields look like Django's, but only these are understood (anything
else is refused when the mailing is saved):

    {{ first_name }}  {{ last_name }}  {{ full_name }}  {{ postcode }}  {{ email }}
    {{ first_name|default:"friend" }}    a fallback for an empty value
    {{ unsubscribe_url }}  {{ preferences_url }}   the supporter's signed links

`supporter.first_name` is accepted as a synonym of `first_name`.
"""

import html
import re
from dataclasses import dataclass
from email.utils import formataddr, parseaddr
from html.parser import HTMLParser
from urllib.parse import urlsplit

from anymail.message import AnymailMessage
from django.conf import settings
from django.urls import reverse

from mailings import tokens
from mailings.exceptions import MergeFieldError

FIELDS = ("first_name", "last_name", "full_name", "postcode", "email")
LINKS = ("unsubscribe_url", "preferences_url")

# Quotes may arrive HTML-escaped when a field sits in the subject or preheader,
# which the base template escapes.
_QUOTE = r"(?P<q>\"|'|&quot;|&\#x27;|&\#39;)"
MERGE_FIELD = re.compile(
    r"\{\{\s*(?:supporter\.)?(?P<name>[A-Za-z_][\w.]*)\s*"
    r"(?:\|\s*default\s*:\s*" + _QUOTE + r"(?P<default>.*?)(?P=q)\s*)?\}\}"
)
ANY_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)


@dataclass(frozen=True)
class Field:
    name: str
    default: str = ""


class Compiled:
    """Text split into literals and merge fields, ready to fill in quickly."""

    def __init__(self, text):
        self.parts = []
        position = 0
        for match in MERGE_FIELD.finditer(text):
            name = match["name"]
            if name not in FIELDS + LINKS:
                raise MergeFieldError(
                    f"Unknown merge field {{{{ {name} }}}}; use one of "
                    + ", ".join(FIELDS + LINKS)
                    + '. A fallback is written {{ first_name|default:"friend" }}.'
                )
            self.parts.append(text[position : match.start()])
            self.parts.append(Field(name, html.unescape(match["default"] or "")))
            position = match.end()
        self.parts.append(text[position:])
        stray = [m.group(0) for part in self.parts[::2] for m in ANY_TAG.finditer(part)]
        if stray:
            raise MergeFieldError(
                f"{stray[0]!r} is not a merge field Rally understands. Write merge fields as "
                '{{ first_name }} or {{ first_name|default:"friend" }}.'
            )

    @property
    def fields(self):
        return set(self.parts[1::2])

    def render(self, values):
        """Return the text with each field replaced by `values[field]`."""
        parts = self.parts
        out = [parts[0]]
        for index in range(1, len(parts), 2):
            out.append(values[parts[index]])
            out.append(parts[index + 1])
        return "".join(out)


def check_merge_fields(*texts):
    """Raise MergeFieldError for the first unknown merge field in `texts`."""
    for text in texts:
        Compiled(text or "")


def as_read(text):
    """Return `text` as a reader sees it, for staff lists: merge fields show their fallback.

    A field without a fallback shows its name in brackets ("Hello [first name]"),
    so no raw {{ … }} reaches a list. Text with an unknown field is returned as written.
    """
    try:
        compiled = Compiled(text or "")
    except MergeFieldError:
        return text
    return compiled.render(
        {field: field.default or f"[{field.name.replace('_', ' ')}]" for field in compiled.fields}
    )


# -- HTML to plain text -----------------------------------------------------------------

_BLOCK = {
    "p", "div", "section", "article", "header", "footer", "table", "tr", "blockquote",
    "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "address", "figure",
}  # fmt: skip
_SKIP = {"head", "style", "script", "title", "template"}


class _TextMaker(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out = []
        self.skip = 0
        self.links = []
        self.lists = []

    def _newlines(self, count):
        text = "".join(self.out)
        trailing = len(text) - len(text.rstrip("\n"))
        if text.strip():
            self.out.append("\n" * max(0, count - trailing))

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in _SKIP:
            self.skip += 1
        elif tag == "br":
            self.out.append("\n")
        elif tag == "hr":
            self._newlines(2)
            self.out.append("----------")
            self._newlines(2)
        elif tag in ("ul", "ol"):
            self._newlines(1 if self.lists else 2)
            self.lists.append([tag, 0])
        elif tag == "li":
            self._newlines(1)
            if self.lists and self.lists[-1][0] == "ol":
                self.lists[-1][1] += 1
                bullet = f"{self.lists[-1][1]}. "
            else:
                bullet = "- "
            self.out.append("  " * max(0, len(self.lists) - 1) + bullet)
        elif tag == "a":
            self.links.append((attrs.get("href") or "", len(self.out)))
        elif tag == "img" and attrs.get("alt"):
            self.out.append(f"[{attrs['alt']}]")
        elif tag in _BLOCK:
            self._newlines(2)

    def handle_endtag(self, tag):
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag == "a" and self.links:
            href, start = self.links.pop()
            label = "".join(self.out[start:]).strip()
            if href and not href.startswith("#") and href != label:
                shown = href.removeprefix("mailto:")
                self.out.append(f" ({shown})" if label else shown)
        elif tag in ("ul", "ol") and self.lists:
            self.lists.pop()
            self._newlines(2)
        elif tag in _BLOCK:
            self._newlines(2)

    def handle_data(self, data):
        if not self.skip:
            self.out.append(re.sub(r"\s+", " ", data))


def html_to_text(source):
    """Return a readable plain-text version of an HTML fragment or document."""
    maker = _TextMaker()
    maker.feed(source or "")
    maker.close()
    lines = [line.strip() for line in "".join(maker.out).splitlines()]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


# -- preparing a mailing ----------------------------------------------------------------


def _default_sender():
    name, address = parseaddr(settings.DEFAULT_FROM_EMAIL)
    return name or settings.SITE_NAME, address


def _list_id(interests):
    host = urlsplit(settings.SITE_URL).hostname or "localhost"
    if not interests:
        return f"{settings.SITE_NAME} newsletter <newsletter.{host}>"
    names = ", ".join(interest.name for interest in interests).replace('"', "'")
    label = ".".join(interest.slug for interest in interests)
    return f'"{names}" <{label}.{host}>'


class _LinkSupporter:
    """Stands in for a supporter in previews and test sends: its links are harmless.

    A token for supporter 0 never matches anyone, so clicking "unsubscribe"
    in a test email shows the "link no longer valid" page and changes nothing.
    """

    pk = 0
    link_version = 0


PREVIEW_LINKS = _LinkSupporter()


class PreparedMailing:
    """A mailing's subject, HTML and text, compiled once, filled in per recipient."""

    def __init__(self, mailing):
        # The composer builds on this module's merge fields, so it is imported here.
        from mailings.composer import blocks, render

        interests = list(mailing.interests.all())
        self.mailing_id = mailing.pk
        self.mailing = mailing
        self.has_interests = bool(interests)
        content = mailing.content_blocks()
        check_merge_fields(
            mailing.subject, mailing.preheader, mailing.body_text, *blocks.merge_texts(content)
        )
        email = render.render_mailing(mailing, interests=interests)
        self.subject = Compiled(mailing.subject.replace("\n", " ").strip())
        self.html = Compiled(email.html)
        self.text = Compiled(email.text)
        name, address = _default_sender()
        self.from_email = formataddr((mailing.from_name or name, mailing.from_email or address))
        self.reply_to = [mailing.reply_to] if mailing.reply_to else []
        self.list_id = _list_id(interests)
        self.fields = self.subject.fields | self.html.fields | self.text.fields
        self._fast_links = None

    def values(self, supporter, links):
        """Return {Field: raw text} for `supporter`, with `links` from links()."""
        raw = {
            "first_name": supporter.first_name,
            "last_name": supporter.last_name,
            "full_name": f"{supporter.first_name} {supporter.last_name}".strip(),
            "postcode": supporter.postcode,
            "email": supporter.email,
        }
        values = {}
        for field in self.fields:
            if field.name in LINKS:
                values[field] = links[field.name]
            else:
                values[field] = (raw[field.name] or field.default).replace("\n", " ")
        return values

    def links(self, supporter):
        preferences, unsubscribe = self._link_maker(supporter)
        return {
            "one_click": unsubscribe,
            "preferences_url": preferences,
            # A mailing sent for no interest has nothing to unsubscribe from by
            # itself; its visible link leads to the preference centre.
            "unsubscribe_url": unsubscribe if self.has_interests else preferences,
        }

    def _link_maker(self, supporter):
        """Return (preferences URL, unsubscribe URL) for `supporter`.

        tokens.preferences_url and tokens.unsubscribe_url are the source of
        truth. Django's reverse() costs more than signing, so after checking,
        for the first supporter, that their links are "site URL + path + token
        + tail", later links are built that way from the tokens module's own
        token makers; if the shape ever differs, every link comes from the two
        functions.
        """
        if self._fast_links is None:
            preferences = tokens.preferences_url(supporter)
            unsubscribe = tokens.unsubscribe_url(supporter, self.mailing)
            marker = "RALLYTOKEN"
            shapes = []
            for name, url in (("preferences", preferences), ("unsubscribe", unsubscribe)):
                head, tail = (settings.SITE_URL + reverse(name, args=[marker])).split(marker)
                middle = url[len(head) : len(url) - len(tail)]
                fits = url.startswith(head) and url.endswith(tail) and "/" not in middle
                shapes.append((head, tail) if fits else None)
            # (Tokens carry a timestamp, so compare shapes, not the exact text.)
            self._fast_links = tuple(shapes) if all(shapes) else False
            return preferences, unsubscribe
        if self._fast_links is False:
            return tokens.preferences_url(supporter), tokens.unsubscribe_url(
                supporter, self.mailing
            )
        (p_head, p_tail), (u_head, u_tail) = self._fast_links
        return (
            p_head + tokens.make_preferences_token(supporter) + p_tail,
            u_head + tokens.make_unsubscribe_token(supporter, self.mailing) + u_tail,
        )

    def headers(self, one_click_url):
        header = f"<{one_click_url}>"
        mailto = settings.RALLY_UNSUBSCRIBE_MAILTO
        if mailto:
            header += f", <mailto:{mailto}?subject=unsubscribe>"
        return {
            "List-Unsubscribe": header,
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "List-Id": self.list_id,
        }

    def _message(self, **kwargs):
        message = AnymailMessage(from_email=self.from_email, reply_to=self.reply_to, **kwargs)
        message.tags = ["newsletter"]
        message.metadata = {"mailing_id": str(self.mailing_id)}
        message.track_opens = settings.RALLY_TRACK_OPENS
        message.track_clicks = settings.RALLY_TRACK_CLICKS
        return message

    def message(self, supporter, *, delivery_id=None, links_for=None, subject_prefix=""):
        """Return the AnymailMessage for one recipient."""
        links = self.links(links_for or supporter)
        values = self.values(supporter, links)
        escaped = {field: html.escape(value) for field, value in values.items()}
        message = self._message(
            subject=subject_prefix + self.subject.render(values),
            body=self.text.render(values),
            to=[formataddr((values_name(supporter), supporter.email))],
            headers=self.headers(links["one_click"]),
        )
        message.attach_alternative(self.html.render(escaped), "text/html")
        if delivery_id is not None:
            message.metadata["delivery_id"] = str(delivery_id)
        return message

    def batch_message(self, recipients, syntax):
        """Return one AnymailMessage for many recipients, personalised with merge_data.

        `recipients` is a list of (delivery id, supporter); `syntax` is the
        ESP's placeholder format, e.g. "%recipient.{}%" for Mailgun.
        """
        keys = {}

        def placeholder(compiled, prefix):
            out = [compiled.parts[0]]
            for index in range(1, len(compiled.parts), 2):
                key = keys.setdefault((prefix, compiled.parts[index]), f"{prefix}{len(keys)}")
                out.append(syntax.format(key))
                out.append(compiled.parts[index + 1])
            return "".join(out)

        subject, text, body = (
            placeholder(self.subject, "t"),
            placeholder(self.text, "t"),
            placeholder(self.html, "h"),
        )
        merge_data, merge_metadata, merge_headers, to = {}, {}, {}, []
        for delivery_id, supporter in recipients:
            links = self.links(supporter)
            values = self.values(supporter, links)
            data = {}
            for (prefix, field), key in keys.items():
                data[key] = html.escape(values[field]) if prefix == "h" else values[field]
            address = supporter.email
            to.append(formataddr((values_name(supporter), address)))
            merge_data[address] = data
            merge_metadata[address] = {"delivery_id": str(delivery_id)}
            merge_headers[address] = {
                "List-Unsubscribe": self.headers(links["one_click"])["List-Unsubscribe"]
            }
        headers = self.headers("")
        del headers["List-Unsubscribe"]
        message = self._message(subject=subject, body=text, to=to, headers=headers)
        message.attach_alternative(body, "text/html")
        message.merge_data = merge_data
        message.merge_metadata = merge_metadata
        message.merge_headers = merge_headers
        return message


def values_name(supporter):
    return f"{supporter.first_name} {supporter.last_name}".strip()


_prepared = {}


def prepare(mailing, variant=None):
    """Return the PreparedMailing for `mailing`, compiled once per process and version.

    With an A/B test's `variant`, the mailing as that variant sends it (its
    subject, and its preheader and blocks where it has its own).
    """
    key = (
        mailing.pk,
        mailing.updated_at,
        variant.pk if variant else None,
        _template_version(mailing),
    )
    prepared = _prepared.get(key)
    if prepared is None:
        if len(_prepared) > 20:
            _prepared.clear()
        source = variant.applied_to(mailing) if variant else mailing
        prepared = _prepared[key] = PreparedMailing(source)
    return prepared


def _template_version(mailing):
    """Return when the mailing's email template (or the default) last changed: one small query.

    A header or footer changed while a journey email or a long mailing sends
    reaches the messages prepared after it.
    """
    from mailings.models import EmailTemplate

    templates = (
        EmailTemplate.objects.filter(pk=mailing.template_id)
        if mailing.template_id
        else EmailTemplate.objects.filter(is_default=True)
    )
    return templates.values_list("pk", "updated_at").first()


# -- checks staff see before sending ------------------------------------------------------


def content_warnings(mailing):
    """Return what staff should fix or know about the mailing as a whole, as sentences.

    What is wrong inside the content (alt text, link text, links that are not
    https, contrast ...) is mailings.composer.checks' job, block by block.
    """
    from mailings.composer import blocks

    warnings = []
    if not mailing.subject.strip():
        warnings.append("The mailing has no subject.")
    content = mailing.content_blocks()
    if not content:
        warnings.append("The mailing has no body.")
    try:
        check_merge_fields(
            mailing.subject, mailing.preheader, mailing.body_text, *blocks.merge_texts(content)
        )
    except MergeFieldError as error:
        warnings.append(error.message)
    if not settings.SITE_URL.startswith("https://") and not settings.DEBUG:
        warnings.append(
            f"No one-click unsubscribe is possible: SITE_URL is {settings.SITE_URL}, and mailbox "
            "providers only honour https unsubscribe links. Set SITE_URL to the site's https "
            "address."
        )
    return warnings


def content_notes(mailing):
    """Return what staff may like to know about sending the mailing that needs no fixing."""
    notes = []
    if not settings.SITE_URL.startswith("https://") and settings.DEBUG:
        # Development runs on http://localhost: as expected, not a fault.
        notes.append(
            f"Development: links in emails start with SITE_URL, {settings.SITE_URL}. Mailbox "
            "providers only offer one-click unsubscribe for https links, so in production "
            "SITE_URL is the site's https address."
        )
    return notes
