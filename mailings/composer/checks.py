"""
The accessibility and quality check staff see before sending.

check_mailing() returns a list of Problems, each naming the block it is in
(so the editor can point at it) and whether it blocks sending. A blocking
problem stops mailing_send_now and mailing_schedule until it is fixed or a
campaign manager allows sending anyway (services.mailing_override_checks,
audited). Test sends are never blocked: staff test to find problems.

Blocking: an image without alt text (a screen reader says nothing, or reads
the file name), text colours under WCAG AA contrast, and content that cannot
be rendered at all. The others are advice: they make an email worse, not
unreadable.
"""

import re
from dataclasses import dataclass
from html.parser import HTMLParser

from django.core.exceptions import ValidationError

from mailings import emails
from mailings.composer import blocks as block_types
from mailings.composer import render

# Link texts that say nothing out of context (screen readers list links alone).
VAGUE_LINK_TEXTS = {
    "click here", "here", "read more", "more", "click", "link", "this link", "learn more",
    "find out more", "this", "go", "click this link", "more info", "continue",
}  # fmt: skip
GMAIL_CLIP_BYTES = 102 * 1024  # Gmail hides the rest of a message past 102 KB
MIN_WORDS_BESIDE_IMAGES = 50  # fewer words than this beside images: "only an image"
# Blocking problems a manager cannot wave through: the email cannot be built.
NOT_OVERRIDABLE = {"invalid", "merge_field", "empty"}
AA_NORMAL = 4.5
AA_LARGE = 3.0  # headings: large text (24 px, or 18.66 px bold)
CARD = "#ffffff"  # the content's background in the email layout
WHITE = "#ffffff"  # text on the header and on buttons


@dataclass(frozen=True)
class Problem:
    code: str
    message: str
    blocking: bool = False
    block_id: str = ""
    block_index: int | None = None  # 1-based position in the newsletter, as staff count
    block_type: str = ""

    @property
    def where(self):
        """Return "Block 3 (image)" or "" for a problem with the whole newsletter."""
        if self.block_index is None:
            return ""
        return (
            f"Block {self.block_index} ({block_types.TYPES.get(self.block_type, self.block_type)})"
        )

    def __str__(self):
        return f"{self.where}: {self.message}" if self.where else self.message


# -- colour contrast (WCAG 2.x) ---------------------------------------------------------


def relative_luminance(colour):
    """Return the WCAG relative luminance of "#rrggbb"."""
    channels = []
    for i in (1, 3, 5):
        c = int(colour[i : i + 2], 16) / 255
        channels.append(c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4)
    red, green, blue = channels
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def contrast_ratio(foreground, background):
    """Return the WCAG contrast ratio of two "#rrggbb" colours, from 1 to 21."""
    lighter, darker = sorted(
        (relative_luminance(foreground), relative_luminance(background)), reverse=True
    )
    return (lighter + 0.05) / (darker + 0.05)


def _contrast_problems(template, blocks):
    pairs = [
        (template.text_colour, CARD, AA_NORMAL, "the text colour on the white content area"),
        (template.text_colour, template.background_colour, AA_NORMAL, "the footer text"),
        (template.brand_colour, CARD, AA_NORMAL, "links (in the brand colour) on white"),
        (template.brand_colour, CARD, AA_LARGE, "headings (in the brand colour) on white"),
        (WHITE, template.brand_colour, AA_LARGE, "the charity's name on the header"),
    ]
    kinds = {block["type"] for block in blocks}
    if kinds & {"button", "action"}:
        pairs.append((WHITE, template.button_colour, AA_NORMAL, "white button text"))
    if "action" in kinds:
        tinted = render.tint(template.brand_colour)
        pairs.append((template.text_colour, tinted, AA_NORMAL, "text in action boxes"))
    problems = []
    seen = set()
    for foreground, background, needed, what in pairs:
        ratio = contrast_ratio(foreground, background)
        if ratio < needed and what not in seen:
            seen.add(what)
            problems.append(
                Problem(
                    "contrast",
                    f"Hard to read: {what} ({foreground} on {background}) has a contrast of "
                    f"{ratio:.1f}:1; at least {needed:g}:1 is needed. Change the colours in "
                    "the email template.",
                    blocking=True,
                )
            )
    return problems


# -- reading rich text --------------------------------------------------------------------


class _Reader(HTMLParser):
    """Collects what the checks need from a block's HTML: links, headings, images, words."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links = []  # (href, text)
        self.headings = []  # levels, in order
        self.images = []  # {attr: value}
        self.words = 0
        self._link = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a":
            self._link = [attrs.get("href") or "", []]
        elif re.fullmatch(r"h[1-6]", tag):
            self.headings.append(int(tag[1]))
        elif tag == "img":
            self.images.append(attrs)
            if self._link is not None and attrs.get("alt"):
                self._link[1].append(attrs["alt"])

    def handle_endtag(self, tag):
        if tag == "a" and self._link is not None:
            href, text = self._link
            self.links.append((href, " ".join("".join(text).split())))
            self._link = None

    def handle_data(self, data):
        self.words += len(data.split())
        if self._link is not None:
            self._link[1].append(data)


def read_html(source):
    reader = _Reader()
    reader.feed(source or "")
    reader.close()
    return reader


def _block_htmls(block):
    """Return the rich text (HTML) a block holds."""
    htmls = [block.get("html") or ""]
    htmls += [column.get("html") or "" for column in block.get("columns") or ()]
    return [h for h in htmls if h]


def _looks_like_url(text):
    return bool(re.match(r"^(https?://|www\.)\S+$", text.strip(), re.IGNORECASE))


def _link_text_problem(text, href, where):
    shown = text.strip().lower().rstrip(".!:…")
    if shown in VAGUE_LINK_TEXTS:
        return (
            f"The link text “{text}” says nothing on its own; screen-reader users often hear "
            "links listed alone. Describe where it leads, e.g. “Read our two-page briefing”."
        )
    if _looks_like_url(text):
        return (
            f"A web address is used as link text ({text[:60]}); it is read out letter by "
            "letter. Describe where it leads instead."
        )
    if not shown and not block_types.is_merge_link(href):
        return "A link has no text, so nobody can tell where it leads."
    return None


def _insecure(url):
    return url.strip().lower().startswith("http://")


# -- the check --------------------------------------------------------------------------


def check_blocks(blocks, *, template=None, preheader="", html_size=None):
    """Return the Problems in clean `blocks` (and the template's colours)."""
    template = render.template_or_default(template)
    problems = []
    level = 1  # the template's header is the email's first heading, an h1
    words = 0
    image_count = 0

    for index, block in enumerate(blocks, start=1):
        kind = block["type"]

        def problem(code, message, blocking=False, block=block, index=index, kind=kind):
            problems.append(Problem(code, message, blocking, block["id"], index, kind))

        links = []  # (href, text)
        headings = []
        images = []
        if kind == "heading":
            headings.append(block["level"])
            words += len(block["text"].split())
        if kind in ("button", "action"):
            links.append((block["url"], block["label"]))
            words += len(block["label"].split()) + len(block.get("headline", "").split())
            if block.get("headline"):
                headings.append(2)
        if kind == "image":
            images.append({"alt": block.get("alt"), "width": block.get("width")})
            if block.get("link"):
                links.append((block["link"], block.get("alt") or ""))
            if _insecure(block["src"]):
                problem(
                    "insecure_link",
                    f"The image is loaded over http ({block['src'][:80]}); some inboxes block "
                    "it. Use an https:// address or upload the image.",
                )
        if kind == "quote":
            words += len(block.get("cite", "").split())
        for source in _block_htmls(block):
            reader = read_html(source)
            links += reader.links
            headings += reader.headings
            words += reader.words
            if kind == "html":
                images += reader.images

        for image in images:
            image_count += 1
            if not (image.get("alt") or "").strip():
                problem(
                    "image_alt",
                    "The image has no alt text: describe it in a few words for people who "
                    "cannot see it (or whose email hides images).",
                    blocking=True,
                )
            if not image.get("width"):
                problem(
                    "image_width",
                    "The image has no width; Outlook shows it at full size, which can "
                    "break the layout. Set its width in pixels (600 at most).",
                )
        for href, text in links:
            message = _link_text_problem(text, href, index)
            if message:
                problem("link_text", message)
            if _insecure(href):
                problem(
                    "insecure_link",
                    f"The link to {href[:80]} is not https; browsers warn about it. Use "
                    "https:// if the site has it.",
                )
        for heading in headings:
            if heading > level + 1:
                problem(
                    "heading_order",
                    f"A level {heading} heading follows a level {level} heading, skipping "
                    f"level {level + 1}; screen-reader users navigate by heading levels. Use a "
                    f"level {level + 1} heading here.",
                )
            level = heading

    if not blocks:
        problems.append(Problem("empty", "The newsletter has no content yet.", blocking=True))
    elif image_count and words < MIN_WORDS_BESIDE_IMAGES:
        problems.append(
            Problem(
                "only_images",
                f"The newsletter is mostly images ({words} words of text). Many people see no "
                "images until they ask, and spam filters distrust image-only email: put the "
                "message in text too.",
            )
        )
    if not preheader.strip():
        problems.append(
            Problem(
                "preheader",
                "There is no preheader: inboxes then show the first words of the email "
                "(“View this email in your browser”) after the subject. Write one line that "
                "makes people want to open it.",
            )
        )
    if html_size is not None and html_size > GMAIL_CLIP_BYTES:
        problems.append(
            Problem(
                "too_big",
                f"The email is {html_size / 1024:.0f} KB; Gmail cuts off emails over 102 KB "
                "and hides the rest, with the unsubscribe link, behind “View entire "
                "message”. Shorten it or split it.",
            )
        )
    problems += _contrast_problems(template, blocks)
    return problems


def check_mailing(mailing) -> list[Problem]:
    """Return the Problems in `mailing`'s content, blocking ones first."""
    try:
        blocks = block_types.clean_blocks(mailing.content_blocks())
    except ValidationError as error:
        return [Problem("invalid", " ".join(error.messages), blocking=True)]
    try:
        emails.check_merge_fields(
            mailing.subject, mailing.preheader, mailing.body_text, *block_types.merge_texts(blocks)
        )
    except emails.MergeFieldError as error:
        return [Problem("merge_field", error.message, blocking=True)]
    template = mailing.email_template()
    try:
        size = len(render.render_mailing(mailing).html.encode())
    except render.RenderError as error:
        return [Problem("invalid", str(error), blocking=True)]
    problems = check_blocks(blocks, template=template, preheader=mailing.preheader, html_size=size)
    return sorted(problems, key=lambda p: not p.blocking)


def blocking_problems(mailing):
    """Return the problems that stop `mailing` being sent, unless a manager overrode them."""
    return [problem for problem in check_mailing(mailing) if problem.blocking]
