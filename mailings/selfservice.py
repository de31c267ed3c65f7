"""
Writes behind the supporter self-service pages: sign-up confirmation, the
preference centre and one-click unsubscribe.

Each change goes through crm.services (consent_grant, supporter_unsubscribe),
so it writes its ConsentRecord and audit event in the same transaction as the
Subscription it changes. Views call these functions and render the outcome.
"""

import hashlib
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from crm import services as crm_services
from crm.models import (
    CampaignInterest,
    ConsentRecord,
    Subscription,
    Supporter,
    Suppression,
    email_hash,
)
from mailings import sql
from mailings.exceptions import SignupRefused
from mailings.tokens import PendingSignup

SIGNUP_LABEL = "sign-up form, confirmed by email"
PREFERENCES_LABEL = "preference centre"
ONE_CLICK_LABEL = "one-click unsubscribe"


def wording(kind: str) -> tuple[str, str]:
    """Return (text, version) of the consent wording shown on the `kind` page.

    `kind` is "signup" or "preferences". The version is the configured one, or
    a hash of the text, so different words never share a version.
    """
    prefix = {"signup": "RALLY_SIGNUP_WORDING", "preferences": "RALLY_PREFERENCES_WORDING"}[kind]
    text = getattr(settings, prefix).format(site_name=settings.SITE_NAME)
    version = getattr(settings, f"{prefix}_VERSION") or (
        "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:12]
    )
    return text, version


def public_interests():
    return CampaignInterest.objects.filter(is_public=True)


def may_email(supporter: Supporter | None) -> bool:
    """Return True if `supporter` may be sent a message they asked for.

    Transactional notices (their link, their data) go to supporters who
    unsubscribed from newsletters too, but never to an address that bounced,
    complained, was erased or is suppressed.
    """
    if supporter is None or supporter.status in crm_services.UNMAILABLE_STATUSES:
        return False
    # Supporters read through a link token carry the answer already.
    suppressed = getattr(supporter, "suppressed", None)
    return not (supporter.is_suppressed() if suppressed is None else suppressed)


def address_refused(email: str) -> bool:
    """Return True if `email` must not be sent a sign-up confirmation."""
    if Suppression.objects.filter(email_hash=email_hash(email)).exists():
        return True
    supporter = crm_services.supporter_get(email)
    return supporter is not None and not may_email(supporter)


def supporter_update_details(*, supporter: Supporter, reason: str, **details) -> list[str]:
    """Set the supporter's first_name, last_name and postcode; return the fields changed.

    The change is kept in the supporter's history with `reason`.
    """
    changed = [
        name
        for name, value in details.items()
        if value is not None and getattr(supporter, name) != value
    ]
    if changed:
        for name in changed:
            setattr(supporter, name, details[name])
        supporter._change_reason = reason
        supporter.save(update_fields=[*changed, "updated_at"])
    return changed


# Sign-up ---------------------------------------------------------------------


def signup_pending(
    *, email, first_name, last_name, postcode, interests, ip_address
) -> PendingSignup:
    """Return the pending sign-up to seal into a confirmation token.

    The wording and its version are those shown on the form now, so the
    consent recorded at confirmation is exactly what the person read.
    """
    text, version = wording("signup")
    return PendingSignup(
        email=email.strip(),
        first_name=first_name,
        last_name=last_name,
        postcode=postcode,
        interest_ids=tuple(interest.pk for interest in interests),
        wording=text,
        wording_version=version,
        ip_address=ip_address if settings.RALLY_RECORD_IP else None,
    )


@dataclass
class SignupResult:
    supporter: Supporter
    created: bool
    added: list = field(default_factory=list)
    already: list = field(default_factory=list)


def signup_confirm(*, signup: PendingSignup) -> SignupResult:
    """Subscribe the person a confirmed sign-up describes; safe to repeat.

    Find or create the supporter by address (never a duplicate, even when
    two confirmations race), fill in name and postcode where empty, and grant
    consent to each chosen public interest with method "sign-up form" and the
    wording shown. Raise SignupRefused for an address we must not email.
    """
    email = signup.email
    if address_refused(email):
        raise SignupRefused("This address cannot be subscribed.")
    interests = list(public_interests().filter(pk__in=signup.interest_ids))
    details = {
        "first_name": signup.first_name,
        "last_name": signup.last_name,
        "postcode": signup.postcode,
    }
    with transaction.atomic():
        supporter = crm_services.supporter_get(email)
        created = False
        if supporter is None:
            try:
                with transaction.atomic():
                    supporter = crm_services.supporter_create(
                        email=email, source=Supporter.Source.SIGNUP_FORM, **details
                    )
                    created = True
            except (IntegrityError, ValidationError):
                # Another confirmation of the same address committed first.
                supporter = crm_services.supporter_get(email)
                if supporter is None:
                    raise SignupRefused("This address cannot be subscribed.") from None
        if not created:
            blanks = {
                name: value
                for name, value in details.items()
                if value and not getattr(supporter, name)
            }
            supporter_update_details(supporter=supporter, reason=SIGNUP_LABEL, **blanks)
        result = SignupResult(supporter=supporter, created=created)
        try:
            for interest in interests:
                granted = crm_services.consent_grant(
                    supporter=supporter,
                    interest=interest,
                    method=ConsentRecord.Method.SIGNUP_FORM,
                    wording=signup.wording,
                    wording_version=signup.wording_version,
                    actor_label=SIGNUP_LABEL,
                    ip_address=signup.ip_address,
                )
                (result.added if granted else result.already).append(interest)
        except crm_services.ConsentRefused:
            raise SignupRefused("This address cannot be subscribed.") from None
    return result


# Preference centre -------------------------------------------------------------


def subscribed_interests(supporter) -> set:
    """Return the ids of the interests `supporter` is subscribed to now."""
    return set(
        Subscription.objects.filter(
            supporter=supporter, status=Subscription.Status.SUBSCRIBED
        ).values_list("interest_id", flat=True)
    )


@dataclass
class PreferenceChanges:
    subscribed: list = field(default_factory=list)
    unsubscribed: list = field(default_factory=list)
    details: list = field(default_factory=list)
    refused: bool = False

    def __bool__(self):
        return bool(self.subscribed or self.unsubscribed or self.details)


def preferences_save(*, supporter: Supporter, interests, **details) -> PreferenceChanges:
    """Make the supporter's public subscriptions exactly `interests`; update their details.

    Each interest ticked or unticked writes a ConsentRecord with method "email
    link" and the wording shown. Internal interests are left alone. A supporter
    who may not be emailed can still unsubscribe and correct their details;
    new subscriptions are then refused (`refused` is set).
    """
    text, version = wording("preferences")
    chosen = {interest.pk for interest in interests}
    changes = PreferenceChanges()
    with transaction.atomic():
        current = subscribed_interests(supporter)
        for interest in public_interests():
            if interest.pk in chosen and interest.pk not in current:
                try:
                    if crm_services.consent_grant(
                        supporter=supporter,
                        interest=interest,
                        method=ConsentRecord.Method.EMAIL_LINK,
                        wording=text,
                        wording_version=version,
                        actor_label=PREFERENCES_LABEL,
                    ):
                        changes.subscribed.append(interest)
                except crm_services.ConsentRefused:
                    changes.refused = True
            elif interest.pk not in chosen and interest.pk in current:
                left = crm_services.supporter_unsubscribe(
                    supporter=supporter,
                    interest=interest,
                    method=ConsentRecord.Method.EMAIL_LINK,
                    wording=text,
                    actor_label=PREFERENCES_LABEL,
                )
                if left:
                    changes.unsubscribed.append(interest)
        supporter.refresh_from_db()
        changes.details = supporter_update_details(
            supporter=supporter,
            reason="Corrected by the supporter in the preference centre",
            **details,
        )
    return changes


def preferences_unsubscribe_all(*, supporter: Supporter, mailing=None, method=None) -> list:
    """Unsubscribe the supporter from all email; return the interests they had.

    The returned interests are what an undo offers to restore.
    """
    with transaction.atomic():
        had = list(CampaignInterest.objects.filter(pk__in=subscribed_interests(supporter)))
        crm_services.supporter_unsubscribe(
            supporter=supporter,
            interest=None,
            method=method or ConsentRecord.Method.EMAIL_LINK,
            mailing=mailing,
            wording="Unsubscribe from all email",
            actor_label=PREFERENCES_LABEL if mailing is None else ONE_CLICK_LABEL,
        )
    return had


def _ids(values) -> list[int]:
    """Return the values that can be primary keys, as ints; the page posts them as text.

    Junk ("²" passes str.isdigit() but not int(); 20 digits overflow the
    database's integer) names no interest, so it is dropped rather than crash.
    """
    texts = (str(value) for value in values)
    return [int(text) for text in texts if text.isascii() and text.isdigit() and len(text) <= 18]


def preferences_resubscribe(*, supporter: Supporter, interest_ids) -> list:
    """Undo an unsubscribe-all: consent to email again and to the interests given.

    Only interests the supporter was subscribed to before are restored. Each
    writes a new ConsentRecord; raise ConsentRefused if they may not be emailed.
    """
    text = "Undo: subscribe me again"
    restored = []
    with transaction.atomic():
        crm_services.consent_grant(
            supporter=supporter,
            interest=None,
            method=ConsentRecord.Method.EMAIL_LINK,
            wording=text,
            actor_label=PREFERENCES_LABEL,
        )
        previously = Subscription.objects.filter(
            supporter=supporter,
            interest_id__in=_ids(interest_ids),
            status=Subscription.Status.UNSUBSCRIBED,
        ).select_related("interest")
        for subscription in previously:
            if crm_services.consent_grant(
                supporter=supporter,
                interest=subscription.interest,
                method=ConsentRecord.Method.EMAIL_LINK,
                wording=text,
                actor_label=PREFERENCES_LABEL,
            ):
                restored.append(subscription.interest)
    return restored


# One-click unsubscribe ------------------------------------------------------------


def interests_with_choices(*, supporter: Supporter, mailing_id=None) -> list:
    """Return the public interests (or those mailing `mailing_id` was sent for).

    Each carries `subscribed`: whether `supporter` is subscribed to it now.
    One plain SQL query (mailings.sql): these answer every preference-centre
    and one-click request.
    """
    return sql.interests_with_choices(supporter_id=supporter.pk, mailing_id=mailing_id)


def one_click_unsubscribe(*, supporter: Supporter, mailing_id) -> list:
    """Unsubscribe the supporter from the interests mailing `mailing_id` was sent for.

    RFC 8058: no further interaction. Each interest left writes a ConsentRecord
    (method "one-click") naming the mailing, which the mailing's report counts.
    Return those interests; [] means a mailing sent for no interest (or no
    mailing), which unsubscribes from all email. Idempotent: a repeat writes
    nothing (and, as providers retry, costs one statement).
    """
    from mailings.models import Mailing

    if mailing_id is not None:
        # A mailing only carries interests while it exists: name it by id.
        interests = crm_services.supporter_unsubscribe_from_mailing(
            supporter=supporter,
            mailing=Mailing(pk=mailing_id),
            method=ConsentRecord.Method.ONE_CLICK,
            actor_label=ONE_CLICK_LABEL,
        )
        if interests:
            return interests
    # A token can outlive its mailing only if nobody ever unsubscribed from
    # it (consent records protect it); then the change is recorded without it.
    mailing = Mailing.objects.only("pk").filter(pk=mailing_id).first() if mailing_id else None
    crm_services.supporter_unsubscribe(
        supporter=supporter,
        method=ConsentRecord.Method.ONE_CLICK,
        mailing=mailing,
        actor_label=ONE_CLICK_LABEL,
    )
    return []
