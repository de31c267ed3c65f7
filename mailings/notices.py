"""
Transactional emails to one person: sign-up confirmation, "your link" and
"download your data".

Each is built from a template triple under templates/email/notices/
(`<name>_subject.txt`, `<name>_body.txt`, `<name>_body.html`) and sent through
Django's email backend, so the configured Anymail ESP (or the local mail sink)
carries it. The public pages only enqueue a task (mailings.tasks) holding an
opaque token or an id; the notice decides whether to send. So a page does the
same work, and takes the same time, whether or not the address is known, and a
slow ESP never slows a page.
"""

import logging

from anymail.message import AnymailMessage
from django.conf import settings
from django.template.loader import render_to_string

from crm.models import CampaignInterest, Supporter
from crm.services import supporter_get
from mailings import selfservice, tokens

logger = logging.getLogger(__name__)


def _send(name: str, to: str, context: dict) -> None:
    context = {"site_name": settings.SITE_NAME, "site_url": settings.SITE_URL, **context}
    subject = render_to_string(f"email/notices/{name}_subject.txt", context)
    message = AnymailMessage(
        subject=" ".join(subject.split()),
        body=render_to_string(f"email/notices/{name}_body.txt", context),
        to=[to],
        from_email=settings.DEFAULT_FROM_EMAIL,
        # One tag: Postmark and some other ESPs accept no more.
        tags=["notice"],
        metadata={"notice": name},
        # Links in these emails are personal and short-lived: keep the ESP from
        # rewriting them for click tracking.
        track_clicks=False,
        track_opens=False,
    )
    message.attach_alternative(
        render_to_string(f"email/notices/{name}_body.html", context), "text/html"
    )
    message.send()


def notice_signup_confirmation(*, token: str) -> bool:
    """Email the confirmation link for a pending sign-up; return True if sent.

    Nothing is sent for an expired token or an address we must not email
    (suppressed, bounced, complained, erased).
    """
    signup = tokens.read_signup_token(token)
    if signup is None:
        logger.info("Sign-up confirmation not sent: the token expired in the queue")
        return False
    if selfservice.address_refused(signup.email):
        logger.info("Sign-up confirmation not sent: the address may not be emailed")
        return False
    interests = CampaignInterest.objects.filter(pk__in=signup.interest_ids, is_public=True)
    _send(
        "signup_confirm",
        signup.email,
        {
            "first_name": signup.first_name,
            "interests": list(interests),
            "confirm_url": tokens.signup_confirm_url(token),
            "max_age_days": settings.RALLY_SIGNUP_CONFIRM_MAX_AGE // 86400,
        },
    )
    return True


def notice_preferences_link(*, token: str) -> bool:
    """Email a fresh preference-centre link to the address sealed in `token`, if known.

    Return True if sent; nothing is sent for an unknown address or one we
    must not email.
    """
    email = tokens.read_link_request_token(token)
    supporter = supporter_get(email) if email else None
    if not selfservice.may_email(supporter):
        logger.info("Preference link not sent: no supporter who may be emailed")
        return False
    _send(
        "preferences_link",
        supporter.email,
        {"supporter": supporter, "preferences_url": tokens.preferences_url(supporter)},
    )
    logger.info("Preference link sent to supporter %s", supporter.pk)
    return True


def notice_data_download(*, supporter_id: int) -> bool:
    """Email supporter `supporter_id` a link to download their data; return True if sent."""
    supporter = Supporter.objects.filter(pk=supporter_id).first()
    if not selfservice.may_email(supporter):
        return False
    _send(
        "data_download",
        supporter.email,
        {
            "supporter": supporter,
            "download_url": tokens.data_download_url(supporter),
            "max_age_hours": settings.RALLY_DATA_LINK_MAX_AGE // 3600,
            "preferences_url": tokens.preferences_url(supporter),
        },
    )
    logger.info("Data download link sent to supporter %s", supporter.pk)
    return True
