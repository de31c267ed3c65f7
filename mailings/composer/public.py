"""
Public newsletter pages: the "view in your browser" copy, the archive, and
the images uploaded in the composer.

The web copy is the same for everyone who has the link (it is linked from
every copy of the email and may be forwarded), so it holds no personal data:
merge fields show their fallback ("Dear friend"), the personal links
(unsubscribe, preferences) give way to the page that emails a fresh link, and
nothing on it tracks a reader.
"""

import re

from django.conf import settings
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_safe

from mailings import emails
from mailings.composer import render as composer_render
from mailings.composer.views import CONTENT_TYPES, IMAGE_FOLDER
from mailings.models import Mailing

# Newsletters carry pictures from elsewhere (https), as the email does; no
# scripts, and nothing sent back anywhere.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' https: data:; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
ARCHIVE_SIZE = 100
_IMAGE_NAME = re.compile(r"^[A-Za-z0-9_-]{8,40}\.(png|jpg|gif)$")


def archived_mailings():
    """Return the sent newsletters staff chose to list in the archive, newest first."""
    return (
        Mailing.objects.filter(
            in_archive=True, status=Mailing.Status.SENT, kind=Mailing.Kind.NEWSLETTER
        )
        .exclude(finished_at=None)
        .order_by("-finished_at")
    )


def has_archive():
    """Return True if the archive lists at least one newsletter (the sign-up page links to it)."""
    return archived_mailings().exists()


def _day(moment):
    return timezone.localtime(moment).strftime("%-d %B %Y") if moment else ""


def _as_read(text):
    """Return `text` with each merge field replaced by its fallback, or by nothing."""
    try:
        compiled = emails.Compiled(text or "")
    except emails.MergeFieldError:
        return ""
    filled = compiled.render({field: field.default for field in compiled.fields})
    # "Hello , welcome" reads better as "Hello, welcome".
    return re.sub(r"\s+([,.!?;:])", r"\1", re.sub(r"\s{2,}", " ", filled)).strip()


def _page(request, template, context, *, status=200):
    context = {"site_name": settings.SITE_NAME, **context}
    response = render(request, f"supporters/{template}", context, status=status, using="jinja2")
    response["Content-Security-Policy"] = CSP
    # The same for everyone and changed only by staff: a short shared cache is fine.
    patch_cache_control(response, public=True, max_age=300)
    return response


@require_safe
def web_copy(request, public_id):
    """The "view in your browser" copy of a newsletter (/newsletters/<public_id>/)."""
    mailing = get_object_or_404(
        Mailing.objects.exclude(status=Mailing.Status.CANCELLED), public_id=public_id
    )
    blocks = mailing.content_blocks()
    first = blocks[0] if blocks else {}
    return _page(
        request,
        "newsletter.html",
        {
            # A newsletter that opens with a large heading has its own title.
            "title_in_body": first.get("type") == "heading" and first.get("level") == 1,
            "mailing": mailing,
            "subject": _as_read(mailing.subject),
            "sent_on": _day(mailing.finished_at or mailing.started_at),
            "body": composer_render.blocks_to_web_html(blocks),
            "in_archive": mailing.in_archive and mailing.status == Mailing.Status.SENT,
        },
    )


@require_safe
def archive(request):
    """The list of past newsletters whose mailing is in the archive (/newsletters/)."""
    mailings = [
        {
            "url": composer_render.web_copy_url(mailing).removeprefix(settings.SITE_URL),
            "subject": _as_read(mailing.subject),
            "preheader": _as_read(mailing.preheader),
            "sent_on": _day(mailing.finished_at),
        }
        for mailing in archived_mailings()[:ARCHIVE_SIZE]
    ]
    return _page(request, "newsletters.html", {"mailings": mailings})


@require_safe
def image(request, name):
    """An image uploaded in the composer, as emails and web copies link to it."""
    match = _IMAGE_NAME.match(name)
    path = f"{IMAGE_FOLDER}{name}"
    if match is None or not default_storage.exists(path):
        raise Http404("No such image.")
    response = FileResponse(default_storage.open(path), content_type=CONTENT_TYPES[match[1]])
    # Names are random and never reused: a year's caching is safe.
    patch_cache_control(response, public=True, max_age=365 * 24 * 3600, immutable=True)
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cross-Origin-Resource-Policy"] = "cross-origin"
    return response
