"""
Writes behind action pages: signing, confirming the choices made when signing,
and making a segment of an action's signers.

Signing is not subscribing. A signature is counted at once; the signer's "yes"
to hear from the charity, and to hear from each co-sponsoring partner, is
recorded by crm's consent services (consent_grant, partner_consent_grant),
each with the wording, its version, the page, the time and (if kept) the IP
address. With RALLY_ACTIONS_DOUBLE_OPT_IN (the default, as for /join/) those
choices wait for a click in a confirmation email; the signature does not.
"""

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import DEFAULT_DB_ALIAS, IntegrityError, transaction
from django.utils import timezone

from crm import exports
from crm import services as crm_services
from crm.exceptions import RallyError
from crm.models import (
    ConsentRecord,
    PartnerConsent,
    PartnerOrganisation,
    Segment,
    Supporter,
    Suppression,
    email_hash,
)
from crm.services.partner_consent import partner_consent_current
from mailings import sql as mailings_sql
from mailings.actions.models import FIELDS, Action, Signature
from mailings.actions.models import wording_version as version_of
from mailings.selfservice import address_refused, supporter_update_details

SOURCES = {
    Action.Kind.PETITION: Supporter.Source.PETITION,
    Action.Kind.PLEDGE: Supporter.Source.PETITION,
    Action.Kind.EVENT: Supporter.Source.EVENT,
}


class SignatureRejected(RallyError, ValidationError):
    """The signature cannot be taken as given; the message says what to fix."""


def action_label(action) -> str:
    """Return how consent given on `action`'s page is labelled (actor_label, source)."""
    return f"action page: {action.slug}"[:200]


def _cosponsors(action):
    """The action's co-sponsors, as the page loaded them if it did (views cache them)."""
    cosponsors = getattr(action, "cosponsors_list", None)
    if cosponsors is None:
        cosponsors = list(action.cosponsors.select_related("partner"))
    for cosponsor in cosponsors:
        cosponsor.action = action
    return cosponsors


def action_partner_choices(*, action, partner_opt_ins) -> list[dict]:
    """Return the co-sponsors named in `partner_opt_ins` as recorded choices.

    `partner_opt_ins` holds PartnerOrganisation objects, slugs or ids; each
    must co-sponsor `action` (SignatureRejected says which does not).
    """
    cosponsors = _cosponsors(action)
    keys = {}
    for cosponsor in cosponsors:
        for key in (cosponsor.partner.pk, str(cosponsor.partner.pk), cosponsor.partner.slug):
            keys[key] = cosponsor
    chosen, unknown = {}, []
    for item in partner_opt_ins:
        key = item.pk if isinstance(item, PartnerOrganisation) else item
        cosponsor = keys.get(key)
        if cosponsor is None:
            unknown.append(str(getattr(item, "slug", item)))
        else:
            chosen[cosponsor.partner.pk] = cosponsor
    if unknown:
        names = ", ".join(c.partner.slug for c in cosponsors) or "none"
        raise SignatureRejected(
            f"{', '.join(unknown)} does not co-sponsor this action; its co-sponsors are: {names}."
        )
    return [
        {
            "partner": cosponsor.partner.pk,
            "wording": cosponsor.wording,
            "privacy_url": cosponsor.privacy_url,
            "version": cosponsor.version(),
            "fields": cosponsor.fields_shared(),
        }
        for cosponsor in chosen.values()
    ]


def _find_or_create_supporter(*, action, email, details):
    """Return (supporter, created): the person with `email`, created if new.

    Creating is crm's supporter_create without its full_clean, whose four
    validation queries cost more than the rest of a signature (docs/
    performance.md, "Action pages"); the same rules hold: the address is
    validated and trimmed by action_sign, the details by the form, an erased
    address is refused, and a duplicate is refused by the database
    (crm_supporter_email_ci_unique) and answered with the one already there.
    """
    supporter = crm_services.supporter_get(email)
    if supporter is None:
        hashed = email_hash(email)
        if Suppression.objects.filter(
            email_hash=hashed, reason=Suppression.Reason.ERASURE
        ).exists():
            raise SignatureRejected("This address cannot sign.")
        try:
            with transaction.atomic():
                supporter = Supporter(email=email, source=SOURCES[action.kind], **details)
                supporter.save()
                return supporter, True
        except IntegrityError:
            # Another signature with the same address committed first.
            supporter = crm_services.supporter_get(email)
    if supporter is None or supporter.status == Supporter.Status.ERASED:
        raise SignatureRejected("This address cannot sign.")
    blanks = {
        name: value for name, value in details.items() if value and not getattr(supporter, name)
    }
    supporter_update_details(supporter=supporter, reason=action_label(action), **blanks)
    return supporter, False


def action_sign(
    *,
    action: Action,
    email: str,
    first_name: str = "",
    last_name: str = "",
    postcode: str = "",
    country: str = "",
    phone: str = "",
    opt_in: bool = False,
    partner_opt_ins=(),
    source: str = "",
    ip: str | None = None,
    page_url: str = "",
    wording_version: str | None = None,
) -> Signature:
    """Sign `action` for the person at `email`; return their signature (one per person).

    - `opt_in`: they ticked the box to hear from the charity (the action's
      interests; the box is only offered when the action has some).
    - `partner_opt_ins`: the co-sponsors whose boxes they ticked, as
      PartnerOrganisation objects, slugs or ids.
    - `source`: where they came from (a co-sponsor's slug attributes the
      signature to that partner); `page_url` and `ip` are kept with their
      consent (the IP only with RALLY_RECORD_IP).
    - `wording_version`: the version of the charity's wording the person was
      shown (the page's hidden field; API clients send what they showed).
      If given and no longer current, nothing is saved: show the new wording.

    The person is found by address or created (source petition or event;
    never the partner's supporter, which would put them in the partner's
    sync export without their yes); empty details are filled in, never
    overwritten. Signing again returns the same signature (the count is
    unchanged) and adds any new opt-ins. `signature.counted` is True when this
    call added the signature. With RALLY_ACTIONS_DOUBLE_OPT_IN, new opt-ins
    wait for the emailed confirmation (`signature.confirmation` "pending", the
    email queued after commit); otherwise they are recorded at once.

    Raise SignatureRejected (a ValidationError) for a closed or draft action,
    a bad address, an unknown partner or an outdated wording version. An
    address that may not be emailed (suppressed, bounced, erased) can still
    sign, but nothing is recorded for its opt-ins.
    """
    if action.status != Action.Status.OPEN:
        raise SignatureRejected("This action is not taking signatures.")
    email = (email or "").strip()
    try:
        validate_email(email)
    except ValidationError:
        raise SignatureRejected("Enter an email address like name@example.org.") from None
    interests = list(action.interests.all())
    opt_in = bool(opt_in and interests)
    wording = action.charity_wording()
    version = version_of(wording)
    if wording_version and opt_in and wording_version != version:
        raise SignatureRejected(
            f"The opt-in wording has changed (now version {version}); show the current "
            "wording and send its version."
        )
    choices = action_partner_choices(action=action, partner_opt_ins=partner_opt_ins)
    source = (source or "").strip()[:100]
    source_partner = next(
        (c.partner for c in _cosponsors(action) if source and c.partner.slug == source), None
    )
    asked = set(action.asked())
    raw = {
        "first_name": first_name,
        "last_name": last_name,
        "postcode": " ".join((postcode or "").upper().split()),
        "country": (country or "").strip().upper(),
        "phone": phone,
    }
    details = {
        name: (raw[name] or "").strip()[: Supporter._meta.get_field(name).max_length]
        for name in FIELDS
        if name in asked and raw[name]
    }
    ip = ip if settings.RALLY_RECORD_IP else None
    if mailings_sql.in_use() and (settings.RALLY_ACTIONS_DOUBLE_OPT_IN or not (opt_in or choices)):
        # A first signature, as the ORM way below would leave it.
        first = Signature(
            action=action,
            source=source,
            source_partner=source_partner,
            page_url=page_url[:500],
            ip_address=ip,
        )
        if opt_in or choices:
            first.opted_in = opt_in
            first.wording, first.wording_version = (wording, version) if opt_in else ("", "")
            first.partner_choices = choices
            first.confirmation = Signature.Confirmation.PENDING
        person = Supporter(email=email, source=SOURCES[action.kind], **details)
        signature = _sign_in_one_statement(first, person=person, given=details)
        if signature is not None:
            return signature
    with transaction.atomic():
        supporter, new = _find_or_create_supporter(action=action, email=email, details=details)
        # Someone new cannot have signed yet: one statement fewer for most signers.
        signature = (
            None if new else Signature.objects.filter(action=action, supporter=supporter).first()
        )
        counted = signature is None
        if new:
            signature = Signature.objects.create(
                action=action,
                supporter=supporter,
                source=source,
                source_partner=source_partner,
                page_url=page_url[:500],
                ip_address=ip,
            )
        elif counted:
            try:
                with transaction.atomic():
                    signature = Signature.objects.create(
                        action=action,
                        supporter=supporter,
                        source=source,
                        source_partner=source_partner,
                        page_url=page_url[:500],
                        ip_address=ip,
                    )
            except IntegrityError:
                # The same person's second click, a moment after the first.
                signature = Signature.objects.get(action=action, supporter=supporter)
                counted = False
        new_choices = _new_choices(signature, opt_in=opt_in, choices=choices)
        if new_choices:
            signature = Signature.objects.select_for_update().get(pk=signature.pk)
            known = {choice["partner"] for choice in signature.partner_choices}
            signature.partner_choices = [
                *signature.partner_choices,
                *(choice for choice in choices if choice["partner"] not in known),
            ]
            if opt_in:
                signature.opted_in = True
                signature.wording, signature.wording_version = wording, version
            signature.page_url = signature.page_url or page_url[:500]
            signature.ip_address = signature.ip_address or ip
            if settings.RALLY_ACTIONS_DOUBLE_OPT_IN:
                signature.confirmation = Signature.Confirmation.PENDING
                signature.emailed_at = None  # the new choices get an email of their own
                signature.save()
                transaction.on_commit(confirmations_due)
            else:
                signature.save()
                signature = action_signature_confirm(signature=signature, pending_only=False)
    signature.counted = counted
    return signature


def _sign_in_one_statement(first, *, person, given) -> Signature | None:
    """Sign in one statement: save `first` for `person` or return their signature.

    PostgreSQL only. `first` is the signature to save if this is their first;
    `person` is who to create if their address is new; `given` names the
    details they gave. Returns None, having written nothing, when signing
    needs the ORM way in action_sign (its twin, which tests/sql compares it
    with; mailings.sql.signature_insert says when).
    """
    person.email_hash = email_hash(person.email)
    signed = mailings_sql.signature_insert(supporter=person, signature=first, given=given)
    if signed is None:
        return None
    pk, supporter_id, first_name, counted, confirmation = signed
    if counted:
        signature = first
        signature.pk = pk
        # Saved, as Model.from_db leaves an instance it loads.
        signature._state.adding, signature._state.db = False, DEFAULT_DB_ALIAS
    else:
        # The signature they have (its other fields load if asked for).
        signature = Signature.from_db(
            DEFAULT_DB_ALIAS,
            ["id", "action_id", "supporter_id", "confirmation"],
            [pk, first.action_id, supporter_id, confirmation],
        )
    signature.supporter = Supporter.from_db(
        DEFAULT_DB_ALIAS, ["id", "first_name"], [supporter_id, first_name]
    )
    signature.counted = counted
    if counted and signature.confirmation == Signature.Confirmation.PENDING:
        transaction.on_commit(confirmations_due)
    return signature


def _new_choices(signature, *, opt_in, choices) -> bool:
    """Whether this signing says yes to something the signature did not hold yet."""
    known = {choice["partner"] for choice in signature.partner_choices}
    return (opt_in and not signature.opted_in) or any(
        choice["partner"] not in known for choice in choices
    )


# Set while a task to empty the outbox is queued and not yet started.
CONFIRMATIONS_DUE = "actions:confirmations-due"


def confirmations_due():
    """Make sure a task comes to email the pending signatures (after they commit).

    One queued task serves every signer until it starts, so a burst of
    signatures costs one cache call each, not a task each. Should the task
    be lost, the flag expires and beat's sweep (actions-send-confirmations)
    empties the outbox anyway.
    """
    from mailings.actions import tasks

    if cache.add(CONFIRMATIONS_DUE, True, timeout=60):
        tasks.send_confirmations.delay()


def action_confirmations_send(*, batch=500) -> int:
    """Queue the confirmation email of every pending signature not yet emailed; return how many.

    Each batch is claimed (emailed_at set) and its emails queued in one
    transaction, so a crash queues them again rather than losing them (a
    second copy of a confirmation is harmless), and two workers never take
    the same signature. The same limits as /join/ hold: nobody floods an
    inbox by signing in its name.
    """
    from mailings import ratelimit
    from mailings.actions import tasks

    cache.delete(CONFIRMATIONS_DUE)
    queued = 0
    while True:
        with transaction.atomic():
            due = list(
                Signature.objects.filter(
                    confirmation=Signature.Confirmation.PENDING, emailed_at__isnull=True
                )
                .select_for_update(skip_locked=True, of=("self",))
                .order_by("pk")
                .values_list("pk", "supporter__email")[:batch]
            )
            if not due:
                return queued
            Signature.objects.filter(pk__in=[pk for pk, _ in due]).update(emailed_at=timezone.now())
            for pk, email in due:
                if ratelimit.allow_address(email, "action") and ratelimit.allow_notice("action"):
                    tasks.send_action_confirmation.delay(pk)
                    queued += 1


def action_signature_confirm(*, signature: Signature, pending_only: bool = True) -> Signature:
    """Record the consent the signer gave when signing; safe to repeat.

    The charity's opt-in subscribes them to the action's interests
    (consent_grant, method "action page"); each partner box ticked records
    an opt-in to that partner (partner_consent_grant), with the wording and
    version they saw. With `pending_only`, only a pending signature is
    confirmed (a claim by conditional update), so a second click writes
    nothing. An address that may not be emailed gets nothing recorded.
    """
    now = timezone.now()
    with transaction.atomic():
        if pending_only:
            claimed = Signature.objects.filter(
                pk=signature.pk, confirmation=Signature.Confirmation.PENDING
            ).update(confirmation=Signature.Confirmation.CONFIRMED, confirmed_at=now)
            if not claimed:
                signature.refresh_from_db()
                return signature
        else:
            Signature.objects.filter(pk=signature.pk).update(
                confirmation=Signature.Confirmation.CONFIRMED, confirmed_at=now
            )
        signature = Signature.objects.select_related("action", "supporter").get(pk=signature.pk)
        action, supporter = signature.action, signature.supporter
        if address_refused(supporter.email):
            return signature
        label = action_label(action)
        try:
            if signature.opted_in:
                for interest in action.interests.all():
                    crm_services.consent_grant(
                        supporter=supporter,
                        interest=interest,
                        method=ConsentRecord.Method.ACTION_PAGE,
                        wording=signature.wording,
                        wording_version=signature.wording_version,
                        actor_label=label,
                        ip_address=signature.ip_address,
                    )
            partners = PartnerOrganisation.objects.in_bulk(
                [choice["partner"] for choice in signature.partner_choices]
            )
            for choice in signature.partner_choices:
                partner = partners.get(choice["partner"])
                if partner is None:
                    continue
                current = partner_consent_current(supporter=supporter, partner=partner)
                if (
                    current is not None
                    and current.action == PartnerConsent.Action.GRANTED
                    and current.wording_version == choice["version"]
                    and set(choice["fields"]) <= set(current.fields)
                ):
                    continue  # the same yes, recorded before
                crm_services.partner_consent_grant(
                    supporter=supporter,
                    partner=partner,
                    fields=choice["fields"],
                    wording=f"{choice['wording']} (privacy notice: {choice['privacy_url']})",
                    wording_version=choice["version"],
                    page_url=signature.page_url,
                    source=label,
                    ip_address=signature.ip_address,
                )
        except crm_services.ConsentRefused:
            pass  # their earlier "no" (or a failed address) stands
    return signature


def action_signers_to_segment(*, action: Action, actor, name: str = "") -> Segment:
    """Make a static segment of everyone who signed `action` now; return it.

    The segment holds people, not consent: mailings still go only to those
    subscribed to the mailing's interests.
    """
    name = (name or f"Signed: {action.title} ({timezone.localtime():%d/%m/%Y %H:%M})")[:190]
    taken = set(Segment.objects.filter(name__startswith=name).values_list("name", flat=True))
    number = 2
    unique = name
    while unique in taken:
        unique, number = f"{name} ({number})", number + 1
    with transaction.atomic():
        segment = crm_services.segment_save(
            segment=Segment(name=unique, kind=Segment.Kind.STATIC), actor=actor
        )
        crm_services.segment_add_members(
            segment=segment,
            supporters=Supporter.objects.filter(signatures__action=action).exclude(
                status=Supporter.Status.ERASED
            ),
            actor=actor,
        )
    return segment


def action_target_csv(*, action: Action, actor) -> exports.ExportFile:
    """Return the signatures to hand to `action`'s target as a CSV, and record the export.

    Names, postcodes (and countries, if asked) and when each signed, in the
    order they signed: never an email address. Erased supporters are left
    out. Formulas are neutralised (crm.exports.write_table).
    """
    asked = action.asked()
    columns = [name for name in ("first_name", "last_name", "postcode", "country") if name in asked]
    headers = [*(FIELDS[name] for name in columns), "Signed at"]
    rows = list(
        Signature.objects.filter(action=action)
        .exclude(supporter__status=Supporter.Status.ERASED)
        .order_by("created_at", "pk")
        .values_list(*(f"supporter__{name}" for name in columns), "created_at")
        .iterator(chunk_size=exports.CHUNK)
    )
    content = exports.write_table(headers=headers, rows=rows, file_format="csv", title=action.title)
    exports.export_audit(
        actor=actor,
        source="admin",
        what="action signatures for the target",
        rows=len(rows),
        columns=columns,
        file_format="csv",
        action=action.slug,
    )
    return exports.ExportFile(
        content=content,
        file_name=f"{action.slug}-signatures-{timezone.localdate().isoformat()}.csv",
        content_type=exports.CONTENT_TYPES["csv"],
        rows=len(rows),
    )
