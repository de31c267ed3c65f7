"""
Block types, validation and sanitising.

clean_blocks() is the one way blocks get into the database: the editor's
JSON goes through it on save. It refuses what cannot be rendered (a
ValidationError naming the block: "Block 3 (button): the button needs a
link."), gives each block an id, and sanitises every rich-text "html" with
nh3, an HTML5 parser, so nothing but the tags below reaches an email.

What can be rendered but should not be sent (an image without alt text, a
"click here" link) is not refused here: staff may save a draft while they
work on it. mailings.composer.checks finds those and blocks sending.
"""

import re
import secrets

import nh3
from django.core.exceptions import ValidationError

TYPES = {
    "heading": "heading",
    "text": "text",
    "image": "image",
    "button": "button",
    "quote": "quote",
    "divider": "divider",
    "columns": "columns",
    "action": "action box",
    "html": "HTML",
}

# What the rich-text editor may produce. Headings inside text are h2-h4: the
# email's own title is the template's h1 or a heading block.
RICH_TAGS = {
    "p", "br", "strong", "b", "em", "i", "u", "a", "ul", "ol", "li",
    "h2", "h3", "h4", "blockquote",
}  # fmt: skip
RICH_ATTRIBUTES = {"a": {"href", "title"}}
URL_SCHEMES = {"http", "https", "mailto"}

# A raw HTML block (the body of a newsletter written before the composer, or
# by staff with the edit_html_block permission) keeps its layout and styles,
# but is parsed and written out again by nh3 too: no scripts, no event
# handlers, and every tag closed, so the email's layout engine can read it.
RAW_TAGS = RICH_TAGS | {
    "h1", "h5", "h6", "div", "span", "img", "table", "thead", "tbody", "tfoot", "tr", "td",
    "th", "hr", "figure", "figcaption", "small", "sup", "sub", "center", "font", "s",
    "caption", "col", "colgroup", "pre", "code",
}  # fmt: skip
_RAW_COMMON = {"style", "class", "align", "dir", "lang", "title", "role"}
RAW_ATTRIBUTES = {
    "*": _RAW_COMMON,
    "a": {"href", "title", "target"},
    "img": {"src", "alt", "width", "height", "border"},
    "table": {"width", "cellpadding", "cellspacing", "border", "bgcolor", "role"},
    "td": {"width", "height", "colspan", "rowspan", "valign", "bgcolor"},
    "th": {"width", "colspan", "rowspan", "valign", "bgcolor", "scope"},
    "tr": {"valign", "bgcolor"},
    "font": {"color", "face", "size"},
    "col": {"width", "span"},
}

MAX_WIDTH = 600  # the email's content width in px
MAX_COLUMNS = 3

# The supporter's signed links (mailings.emails.LINKS) as merge fields.
_MERGE_LINK = re.compile(r"^\{\{\s*(?:unsubscribe_url|preferences_url)\s*\}\}$")
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")


class BlockError(ValidationError):
    """A block that cannot be saved, with the block's position and type in the message."""


def is_merge_link(url):
    """Return True if `url` is one of the supporter's signed links as a merge field."""
    return bool(_MERGE_LINK.match(url.strip()))


def link_allowed(url):
    """Return True if `url` may be a link in an email: http(s), mailto, or a merge-field link."""
    url = url.strip()
    if is_merge_link(url):
        return True
    match = _SCHEME.match(url)
    return bool(match) and match.group(1).lower() in URL_SCHEMES and len(url) > len(match.group(0))


def image_src_allowed(src):
    """Return True if `src` is a web address or a path on this site (e.g. /media/...)."""
    src = src.strip()
    if src.startswith("/") and not src.startswith("//"):
        return True
    match = _SCHEME.match(src)
    return bool(match) and match.group(1).lower() in ("http", "https")


def _filter_attribute(tag, attribute, value):
    if attribute == "href" and not link_allowed(value):
        return None
    return value


def sanitise(html):
    """Return `html` with only the rich-text tags and safe links left; merge fields kept."""
    return nh3.clean(
        html or "",
        tags=RICH_TAGS,
        attributes=RICH_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel=None,
        attribute_filter=_filter_attribute,
        strip_comments=True,
    ).strip()


def _filter_raw_attribute(tag, attribute, value):
    if attribute == "src" and not image_src_allowed(value):
        return None
    return _filter_attribute(tag, attribute, value)


def sanitise_raw(html):
    """Return raw HTML with scripts, event handlers and unsafe links removed, tags closed."""
    return nh3.clean(
        html or "",
        tags=RAW_TAGS,
        attributes=RAW_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel=None,
        attribute_filter=_filter_raw_attribute,
        strip_comments=True,
    ).strip()


def new_block_id():
    return "b" + secrets.token_hex(4)


def _text(block, key):
    value = block.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError(key)
    return value.strip()


def clean_block(block, position, *, allow_html=True, previous=None):
    """Return a clean copy of `block` (the `position`th, from 1), or raise BlockError."""
    if not isinstance(block, dict):
        raise BlockError(f"Block {position} is not a block (expected an object with a type).")
    kind = block.get("type")
    if kind not in TYPES:
        raise BlockError(
            f"Block {position} has an unknown type {kind!r}; expected one of "
            + ", ".join(TYPES)
            + "."
        )
    name = f"Block {position} ({TYPES[kind]})"

    def fail(message):
        raise BlockError(f"{name}: {message}")

    block_id = block.get("id")
    if not isinstance(block_id, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", block_id):
        block_id = new_block_id()
    clean = {"id": block_id, "type": kind}
    try:
        if kind == "heading":
            clean["text"] = _text(block, "text")
            if not clean["text"]:
                fail("the heading has no text.")
            level = block.get("level", 2)
            if level not in (1, 2, 3):
                fail("the level must be 1, 2 or 3.")
            clean["level"] = level
        elif kind in ("text", "quote"):
            clean["html"] = sanitise(_text(block, "html"))
            if kind == "quote":
                clean["cite"] = _text(block, "cite")
        elif kind == "image":
            clean["src"] = _text(block, "src")
            if not clean["src"]:
                fail("choose an image.")
            if not image_src_allowed(clean["src"]):
                fail("the image must be a web address (https://...) or an uploaded file.")
            clean["alt"] = _text(block, "alt")
            width = block.get("width")
            if width in (None, ""):
                clean["width"] = None
            elif isinstance(width, bool) or not isinstance(width, int | str):
                fail("the width must be a number of pixels.")
            else:
                try:
                    width = int(width)
                except ValueError:
                    fail("the width must be a number of pixels.")
                if not 1 <= width <= MAX_WIDTH:
                    fail(f"the width must be between 1 and {MAX_WIDTH} pixels.")
                clean["width"] = width
            clean["link"] = _text(block, "link")
            if clean["link"] and not link_allowed(clean["link"]):
                fail("the image's link must start with https://, http:// or mailto:.")
        elif kind in ("button", "action"):
            if kind == "action":
                clean["headline"] = _text(block, "headline")
                clean["html"] = sanitise(_text(block, "html"))
            clean["label"] = _text(block, "label")
            clean["url"] = _text(block, "url")
            if not clean["label"]:
                fail("the button needs a label.")
            if not clean["url"]:
                fail("the button needs a link.")
            if not link_allowed(clean["url"]):
                fail("the button's link must start with https://, http:// or mailto:.")
        elif kind == "columns":
            columns = block.get("columns")
            if not isinstance(columns, list) or not 2 <= len(columns) <= MAX_COLUMNS:
                fail(f"columns come in twos or threes (2 to {MAX_COLUMNS}).")
            clean["columns"] = []
            for column in columns:
                if not isinstance(column, dict):
                    fail("each column must have its own text.")
                clean["columns"].append({"html": sanitise(_text(column, "html"))})
        elif kind == "html":
            clean["html"] = sanitise_raw(_text(block, "html"))
            if not allow_html:
                before = (previous or {}).get(block_id)
                unchanged = before is not None and before.get("type") == "html"
                if not unchanged or before.get("html", "") != clean["html"]:
                    fail(
                        "only staff allowed to edit raw HTML can add or change an HTML block. "
                        "Use a text block, or ask someone who may."
                    )
    except TypeError as error:
        fail(f"{error.args[0]} must be text.")
    return clean


def clean_blocks(blocks, *, allow_html=True, previous=()) -> list:
    """Return `blocks` validated, sanitised and each with a unique id; or raise BlockError.

    With `allow_html` False, an "html" block is refused unless it is in
    `previous` (the blocks as saved before) with the same id and HTML, so staff
    without the edit_html_block permission can move or delete one but not
    write one. Merge fields are checked (emails.check_merge_fields) when the
    mailing is prepared and by the send check, not here.
    """
    if blocks is None:
        return []
    if not isinstance(blocks, list):
        raise BlockError("The newsletter's content must be a list of blocks.")
    before = {b.get("id"): b for b in previous or () if isinstance(b, dict)}
    cleaned = []
    seen = set()
    for position, block in enumerate(blocks, start=1):
        clean = clean_block(block, position, allow_html=allow_html, previous=before)
        if clean["id"] in seen:
            clean["id"] = new_block_id()
        seen.add(clean["id"])
        cleaned.append(clean)
    return cleaned


def merge_texts(blocks):
    """Return every piece of text in `blocks` that may hold merge fields."""
    texts = []
    for block in blocks:
        for key in ("text", "html", "alt", "src", "link", "label", "url", "cite", "headline"):
            value = block.get(key)
            if isinstance(value, str) and value:
                texts.append(value)
        for column in block.get("columns") or ():
            if isinstance(column, dict) and isinstance(column.get("html"), str):
                texts.append(column["html"])
    return texts
