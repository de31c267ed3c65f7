"""
The composer's admin views: image upload and the preview's frames.

MailingAdmin.get_urls (mailings/admin.py) wires them in behind admin_view, so
only logged-in staff reach them; each checks its own permission too.
"""

import secrets

from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.http import HttpResponse, JsonResponse
from django.urls import reverse
from django.views.decorators.http import require_POST

# Email clients show PNG, JPEG and GIF; anything else is refused, whatever its name says.
IMAGE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
)
CONTENT_TYPES = {"png": "image/png", "jpg": "image/jpeg", "gif": "image/gif"}
MAX_IMAGE_BYTES = 5 * 1024 * 1024
IMAGE_FOLDER = "composer/images/"

# The preview's frames show the email as mail clients do: its own <style> and
# remote images, and nothing that runs. `sandbox` (here and on the <iframe>)
# gives the document a unique origin with scripts, forms and popups off.
FRAME_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data: 'self'; "
    "font-src https: data:; base-uri 'none'; form-action 'none'; frame-ancestors 'self'; sandbox"
)


def image_kind(head):
    """Return "png", "jpg" or "gif" for a file starting with `head`, else None."""
    for signature, kind in IMAGE_SIGNATURES:
        if head.startswith(signature):
            return kind
    return None


@require_POST
def image_upload(request):
    """Store an uploaded image for a block; answer {"src": its public address} or {"error"}."""
    user = request.user
    if not (user.has_perm("mailings.change_mailing") or user.has_perm("mailings.add_mailing")):
        raise PermissionDenied
    upload = request.FILES.get("image")
    if upload is None:
        return JsonResponse({"error": "Choose an image file to upload."}, status=400)
    if upload.size > MAX_IMAGE_BYTES:
        return JsonResponse(
            {"error": "The image is over 5 MB: save it smaller (1200 px wide is plenty)."},
            status=400,
        )
    head = upload.read(8)
    upload.seek(0)
    kind = image_kind(head)
    if kind is None:
        return JsonResponse(
            {"error": "The image must be a PNG, JPEG or GIF file (what email clients show)."},
            status=400,
        )
    # A random name: the address is public (emails link to it) but unguessable,
    # and nothing staff call a file reaches the storage's paths.
    name = default_storage.save(f"{IMAGE_FOLDER}{secrets.token_urlsafe(12)}.{kind}", upload)
    return JsonResponse({"src": reverse("newsletter-image", args=[name.rsplit("/", 1)[-1]])})


def frame_response(html):
    """Return `html` (a whole email) as a page only this site may frame, sandboxed."""
    response = HttpResponse(html, content_type="text/html; charset=utf-8")
    response["Content-Security-Policy"] = FRAME_CSP
    response["X-Frame-Options"] = "SAMEORIGIN"
    response["Cache-Control"] = "no-store"
    return response


def email_template_create_from_mailing(*, mailing, name):
    """Return a new EmailTemplate: `mailing`'s header and footer, and its blocks to start from."""
    from mailings.models import EmailTemplate

    source = mailing.email_template()
    template = EmailTemplate(name=name, blocks=list(mailing.content_blocks()), is_default=False)
    if source is not None:
        for field in (
            "logo",
            "logo_alt",
            "brand_colour",
            "button_colour",
            "background_colour",
            "text_colour",
            "postal_address",
            "footer_text",
        ):
            setattr(template, field, getattr(source, field))
    template.save()
    return template
