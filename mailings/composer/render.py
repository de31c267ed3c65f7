"""
Rendering blocks: as a responsive email (MJML), as plain text, and as a web page.

An email is built as MJML (templates/email/newsletter.mjml: the template's
header and footer around the blocks), then compiled to HTML by mjml-python,
which writes the table layout, the media query that stacks columns on a
phone, and most styles inline. Rich text inside a block is styled here, tag
by tag, since email clients drop <style> more often than style="".

Merge fields ({{ first_name }}, {{ preferences_url }} ...) pass through
untouched: mailings.emails compiles the result once per mailing and fills the
fields in per recipient.
"""

import copy
import functools
import html
import re
from dataclasses import dataclass
from html.parser import HTMLParser

import nh3
from django.conf import settings
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.safestring import mark_safe
from mjml import mjml2html

from mailings import emails
from mailings.composer import blocks as block_types
from mailings.models import EmailTemplate

FONT = "Arial, Helvetica, sans-serif"
PADDING = "0 32px 16px 32px"
TEXT_PADDING = "0 32px"  # rich text's paragraphs, lists and headings bring their own margins


@dataclass(frozen=True)
class Email:
    html: str
    text: str


class RenderError(ValueError):
    """The blocks could not be made into an email (e.g. a raw HTML block MJML cannot read)."""


def web_copy_url(mailing):
    """Return the address of `mailing`'s "view in your browser" copy."""
    return f"{settings.SITE_URL}/newsletters/{mailing.public_id}/"


def absolute(url):
    """Return `url` with this site's address in front if it is a path (/media/...)."""
    if url.startswith("/") and not url.startswith("//"):
        return settings.SITE_URL + url
    return url


COLOURS = ("brand_colour", "button_colour", "background_colour", "text_colour")
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


def template_or_default(template=None):
    """Return `template`, else the default EmailTemplate, else one with the built-in colours.

    A colour that is not "#rrggbb" (a row written without the form's validation)
    is replaced by the built-in one on a copy, as the colours go into the email's
    markup and into the contrast check's arithmetic.
    """
    template = template or EmailTemplate.objects.default() or EmailTemplate(name=settings.SITE_NAME)
    wrong = [name for name in COLOURS if not _HEX.match(getattr(template, name) or "")]
    if wrong:
        template = copy.copy(template)
        for name in wrong:
            setattr(template, name, EmailTemplate._meta.get_field(name).default)
    return template


# -- styling rich text ------------------------------------------------------------------


def rich_text_styles(template):
    """Return {tag: inline style} for rich text in the email, in `template`'s colours."""
    heading = f"font-family:{FONT};line-height:1.25;color:{template.brand_colour};"
    return {
        "p": "margin:0 0 16px 0;",
        "ul": "margin:0 0 16px 0;padding-left:24px;",
        "ol": "margin:0 0 16px 0;padding-left:24px;",
        "li": "margin:0 0 6px 0;",
        "a": f"color:{template.brand_colour};text-decoration:underline;",
        "h1": heading + "font-size:28px;margin:0 0 16px 0;",
        "h2": heading + "font-size:22px;margin:8px 0 12px 0;",
        "h3": heading + "font-size:19px;margin:8px 0 10px 0;",
        "h4": heading + "font-size:17px;margin:8px 0 8px 0;",
        "blockquote": (
            f"margin:0 0 16px 0;padding:4px 0 4px 16px;border-left:4px solid "
            f"{template.button_colour};font-style:italic;"
        ),
    }


class _Styler(HTMLParser):
    """Re-writes sanitised rich text with a style="" on each tag the map names."""

    def __init__(self, styles):
        super().__init__(convert_charrefs=False)
        self.styles = styles
        self.out = []

    def _tag(self, tag, attrs, close=""):
        parts = [tag]
        for name, value in attrs:
            if name == "style":
                continue
            parts.append(name if value is None else f'{name}="{html.escape(value)}"')
        if tag in self.styles:
            parts.append(f'style="{self.styles[tag]}"')
        self.out.append(f"<{' '.join(parts)}{close}>")

    def handle_starttag(self, tag, attrs):
        self._tag(tag, attrs)

    def handle_startendtag(self, tag, attrs):
        self._tag(tag, attrs, " /")

    def handle_endtag(self, tag):
        self.out.append(f"</{tag}>")

    def handle_data(self, data):
        self.out.append(data)

    def handle_entityref(self, name):
        self.out.append(f"&{name};")

    def handle_charref(self, name):
        self.out.append(f"&#{name};")


def style_rich_text(source, styles):
    """Return sanitised rich text `source` with `styles` inlined on its tags."""
    styler = _Styler(styles)
    styler.feed(source)
    styler.close()
    return "".join(styler.out)


# -- blocks to MJML ---------------------------------------------------------------------


def _attr(value):
    return html.escape(str(value), quote=True)


def _section(body, *, background="#ffffff", extra=""):
    return (
        f'<mj-section css-class="rally-card" background-color="{background}" '
        f'padding="0px"{extra}><mj-column>{body}</mj-column></mj-section>'
    )


def _text(content, *, css="rally-text", padding=TEXT_PADDING):
    return f'<mj-text css-class="{css}" padding="{padding}">{content}</mj-text>'


def _button(label, url, template, *, padding="8px 32px 24px 32px"):
    return (
        f'<mj-button css-class="rally-button" href="{_attr(absolute(url))}" '
        f'background-color="{template.button_colour}" color="#ffffff" font-weight="bold" '
        f'font-size="17px" inner-padding="14px 24px" border-radius="4px" align="left" '
        f'padding="{padding}">{html.escape(label)}</mj-button>'
    )


def tint(colour, amount=0.9):
    """Return `colour` mixed with white (amount 0.9: 90% white), as #rrggbb."""
    channels = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(c + (255 - c) * amount):02x}" for c in channels)


# Blocks laid out as sections of their own; the others share one section (and
# its table) with their neighbours, which keeps the email small.
SECTIONED = {"columns", "action"}


def block_to_mjml(block, template, styles):
    """Return the MJML for one clean block: a section if SECTIONED, else a column's content."""
    kind = block["type"]
    if kind == "heading":
        level = block["level"]
        return _text(
            f'<h{level} style="{styles[f"h{level}"]}">{html.escape(block["text"])}</h{level}>'
        )
    if kind == "text":
        return _text(style_rich_text(block["html"], styles))
    if kind == "quote":
        cite = ""
        if block.get("cite"):
            cite = (
                f'<p style="margin:0;font-style:normal;font-size:15px;">'
                f"&mdash; {html.escape(block['cite'])}</p>"
            )
        quote = style_rich_text(block["html"], styles)
        return _text(f'<blockquote style="{styles["blockquote"]}">{quote}{cite}</blockquote>')
    if kind == "image":
        width = f' width="{block["width"]}px"' if block.get("width") else ""
        link = f' href="{_attr(absolute(block["link"]))}"' if block.get("link") else ""
        return (
            f'<mj-image src="{_attr(absolute(block["src"]))}" alt="{_attr(block.get("alt", ""))}"'
            f'{width}{link} align="center" padding="{PADDING}" />'
        )
    if kind == "button":
        return _button(block["label"], block["url"], template)
    if kind == "divider":
        return (
            f'<mj-divider border-color="{tint(template.text_colour, 0.75)}" border-width="1px" '
            f'padding="8px 32px 24px 32px" />'
        )
    if kind == "columns":
        columns = "".join(
            "<mj-column>"
            + _text(style_rich_text(column["html"], styles), padding="0 16px")
            + "</mj-column>"
            for column in block["columns"]
        )
        return (
            f'<mj-section css-class="rally-card" background-color="#ffffff" '
            f'padding="0 16px">{columns}</mj-section>'
        )
    if kind == "action":
        parts = []
        if block.get("headline"):
            parts.append(
                _text(
                    f'<h2 style="{styles["h2"]}">{html.escape(block["headline"])}</h2>',
                    padding="24px 24px 0 24px",
                )
            )
        if block.get("html"):
            parts.append(_text(style_rich_text(block["html"], styles), padding="0 24px"))
        parts.append(_button(block["label"], block["url"], template, padding="8px 24px 24px 24px"))
        return (
            '<mj-section css-class="rally-card" background-color="#ffffff" '
            'padding="0 32px 16px 32px"><mj-column css-class="rally-action" '
            f'background-color="{tint(template.brand_colour)}" '
            f'border-left="6px solid {template.button_colour}">'
            f"{''.join(parts)}</mj-column></mj-section>"
        )
    if kind == "html":
        return _text(block["html"], css="rally-text rally-html", padding=PADDING)
    raise RenderError(f"Unknown block type {kind!r}.")


def blocks_to_mjml(blocks, template):
    """Return the MJML for clean `blocks`, neighbours sharing a section where they can."""
    styles = rich_text_styles(template)
    sections, run = [], []
    for block in blocks:
        mjml = block_to_mjml(block, template, styles)
        if block["type"] in SECTIONED:
            if run:
                sections.append(_section("".join(run)))
                run = []
            sections.append(mjml)
        else:
            run.append(mjml)
    if run:
        sections.append(_section("".join(run)))
    return "".join(sections)


@functools.lru_cache(maxsize=32)
def mjml_to_html(source):
    """Return MJML `source` compiled to HTML (cached: the same source compiles once)."""
    try:
        return mjml2html(source, disable_comments=True, fonts={})
    except Exception as error:  # mjml-python raises its own parse errors
        raise RenderError(
            f"The newsletter could not be laid out as an email ({error}). Check any HTML "
            "block for unclosed tags."
        ) from None


# -- whole emails -----------------------------------------------------------------------


def _clean(blocks):
    """Blocks as stored may predate a rule; render only what clean_blocks accepts."""
    return block_types.clean_blocks(list(blocks or ()))


def email_context(*, template, subject, preheader, web_url, interests):
    template = template_or_default(template)
    logo_url = ""
    if template.logo:
        # Served with the composer's images (mailings.composer.public.image).
        name = template.logo.name.rsplit("/", 1)[-1]
        logo_url = absolute(reverse("newsletter-image", args=[name]))
    return {
        "template": template,
        "subject": subject,
        "preheader": preheader,
        "web_url": web_url,
        "interests": interests,
        "logo_url": logo_url,
        "logo_alt": template.logo_alt or settings.SITE_NAME,
        "postal_address": ", ".join(
            line.strip() for line in template.postal_address.splitlines() if line.strip()
        ),
        "site_name": settings.SITE_NAME,
        "site_url": settings.SITE_URL,
        "unsubscribe_url": "{{ unsubscribe_url }}",
        "preferences_url": "{{ preferences_url }}",
        "dark": DARK,
    }


# Dark mode, for the mail apps that honour prefers-color-scheme (Apple Mail, Outlook
# on the Mac): light text on dark, whatever the template's colours.
DARK = {
    "background": "#111a1f",
    "card": "#1a262d",
    "action": "#26363f",
    "text": "#e8eef1",
    "link": "#8fd1ea",
}


def render_email(
    blocks, *, template=None, subject="", preheader="", web_url="", interests=(), body_text=""
) -> Email:
    """Return the email's HTML and plain text for `blocks`, merge fields left in place.

    `body_text`, when staff wrote one, replaces the text made from the blocks.
    """
    blocks = _clean(blocks)
    template = template_or_default(template)
    context = email_context(
        template=template,
        subject=subject,
        preheader=preheader,
        web_url=web_url,
        interests=list(interests),
    )
    source = render_to_string(
        "email/newsletter.mjml",
        {**context, "body": mark_safe(blocks_to_mjml(blocks, template))},  # noqa: S308 - escaped above
    )
    text = render_to_string(
        "email/newsletter.txt",
        {**context, "body": body_text.strip() or blocks_to_text(blocks)},
    )
    return Email(html=mjml_to_html(source), text=text)


def render_mailing(mailing, *, interests=None) -> Email:
    """Return `mailing`'s email (HTML and text), merge fields left in place."""
    if interests is None:
        interests = list(mailing.interests.all())
    return render_email(
        mailing.content_blocks(),
        template=mailing.email_template(),
        subject=mailing.subject,
        preheader=mailing.preheader,
        web_url=web_copy_url(mailing),
        interests=interests,
        body_text=mailing.body_text,
    )


# -- plain text -------------------------------------------------------------------------


def _html_text(source):
    return emails.html_to_text(source)


def block_to_text(block):
    """Return the plain-text version of one clean block."""
    kind = block["type"]
    if kind == "heading":
        text = block["text"]
        if block["level"] == 1:
            return f"{text}\n{'=' * len(text)}"
        if block["level"] == 2:
            return f"{text}\n{'-' * len(text)}"
        return text
    if kind in ("text", "html"):
        return _html_text(block["html"])
    if kind == "quote":
        lines = [f"> {line}" if line else ">" for line in _html_text(block["html"]).splitlines()]
        if block.get("cite"):
            lines.append(f"> -- {block['cite']}")
        return "\n".join(lines)
    if kind == "image":
        alt = block.get("alt") or ""
        if block.get("link"):
            return f"[{alt or 'Image'}]: {absolute(block['link'])}"
        return f"[{alt}]" if alt else ""
    if kind == "button":
        return f"{block['label']}: {absolute(block['url'])}"
    if kind == "divider":
        return "----------"
    if kind == "columns":
        return "\n\n".join(_html_text(column["html"]) for column in block["columns"])
    if kind == "action":
        parts = []
        if block.get("headline"):
            parts.append(f"{block['headline']}\n{'-' * len(block['headline'])}")
        if block.get("html"):
            parts.append(_html_text(block["html"]))
        parts.append(f"{block['label']}: {absolute(block['url'])}")
        return "\n\n".join(parts)
    return ""


def blocks_to_text(blocks):
    """Return the plain-text version of clean `blocks`: headings, lists, "text (url)" links."""
    return "\n\n".join(part for part in (block_to_text(b).strip() for b in blocks) if part)


# -- web pages --------------------------------------------------------------------------

# A raw HTML block on a public page is sanitised too: it may have been written
# for an email, with styles and tables, but never runs a script on the site.
WEB_HTML_TAGS = block_types.RICH_TAGS | {
    "h1", "h5", "h6", "div", "span", "img", "table", "thead", "tbody", "tr", "td", "th",
    "hr", "figure", "figcaption", "small", "sup", "sub", "center",
}  # fmt: skip
WEB_HTML_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
    "*": {"class"},
}


def _web_link_filter(tag, attribute, value):
    # Personal links (unsubscribe, preferences) mean nothing on a public page.
    if attribute == "href" and (
        block_types.is_merge_link(value) or not block_types.link_allowed(value)
    ):
        return None
    if attribute == "src" and not block_types.image_src_allowed(value):
        return None
    return value


def _web_rich(source, *, raw=False):
    return nh3.clean(
        source or "",
        tags=WEB_HTML_TAGS if raw else block_types.RICH_TAGS,
        attributes=WEB_HTML_ATTRIBUTES if raw else block_types.RICH_ATTRIBUTES,
        url_schemes=block_types.URL_SCHEMES,
        link_rel="noopener",
        attribute_filter=_web_link_filter,
        strip_comments=True,
    )


def block_to_web_html(block):
    """Return one clean block as HTML for a web page (classes only, no inline styles)."""
    kind = block["type"]
    esc = html.escape
    if kind == "heading":
        level = block["level"]
        return f'<h{level} class="composer-heading">{esc(block["text"])}</h{level}>'
    if kind == "text":
        return f'<div class="composer-text">{_web_rich(block["html"])}</div>'
    if kind == "html":
        return (
            f'<div class="composer-text composer-html">{_web_rich(block["html"], raw=True)}</div>'
        )
    if kind == "quote":
        cite = f"<footer>&mdash; {esc(block['cite'])}</footer>" if block.get("cite") else ""
        return f'<blockquote class="composer-quote">{_web_rich(block["html"])}{cite}</blockquote>'
    if kind == "image":
        width = f' width="{block["width"]}"' if block.get("width") else ""
        image = (
            f'<img src="{esc(absolute(block["src"]))}" alt="{esc(block.get("alt", ""))}"'
            f'{width} loading="lazy">'
        )
        link = block.get("link") or ""
        if link and not block_types.is_merge_link(link):
            image = f'<a href="{esc(absolute(link))}">{image}</a>'
        return f'<figure class="composer-image">{image}</figure>'
    if kind in ("button", "action"):
        button = ""
        if not block_types.is_merge_link(block["url"]):
            button = (
                f'<p class="composer-button"><a href="{esc(absolute(block["url"]))}">'
                f"{esc(block['label'])}</a></p>"
            )
        if kind == "button":
            return button
        headline = f"<h2>{esc(block['headline'])}</h2>" if block.get("headline") else ""
        return (
            f'<section class="composer-action">{headline}{_web_rich(block.get("html", ""))}'
            f"{button}</section>"
        )
    if kind == "divider":
        return '<hr class="composer-divider">'
    if kind == "columns":
        columns = "".join(
            f'<div class="composer-column">{_web_rich(column["html"])}</div>'
            for column in block["columns"]
        )
        count = len(block["columns"])
        return f'<div class="composer-columns composer-columns-{count}">{columns}</div>'
    return ""


def fill_with_fallbacks(source):
    """Return `source` with each merge field replaced by its fallback (or nothing), escaped."""
    try:
        compiled = emails.Compiled(source)
    except emails.MergeFieldError:
        return source
    return compiled.render({field: html.escape(field.default) for field in compiled.fields})


def blocks_to_web_html(blocks):
    """Return `blocks` as safe HTML for a public page: the web copy, an action page.

    Merge fields show their fallback ("Dear friend"), personal links
    (unsubscribe, preferences) are removed, and everything is sanitised, so
    the result can be marked safe in a template under a strict CSP.
    """
    body = "\n".join(block_to_web_html(block) for block in _clean(blocks))
    return mark_safe(fill_with_fallbacks(body))  # noqa: S308 - built from sanitised parts
