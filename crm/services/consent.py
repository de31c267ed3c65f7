"""
Consent and suppression: every write to Subscription, ConsentRecord and
Suppression, each with its audit event in the same transaction. One supporter
at a time (consent_grant, supporter_unsubscribe, supporter_mark_undeliverable),
in bulk for staff actions (supporters_subscribe, supporters_unsubscribe), and
in bulk for partner imports (consents_grant_bulk when one is confirmed;
consents_withdraw_bulk and supporters_delete_unused_import when one is
reverted), whose one audit event per batch the caller writes.

Where crm.sql holds a faster statement for a write (PostgreSQL), the service
chooses it with sql.in_use(); nothing else calls crm.sql's writes to these tables.
"""

from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from crm import sql
from crm.exceptions import ConsentRefused
from crm.models import (
    AuditEvent,
    CampaignInterest,
    ConsentRecord,
    LawfulBasis,
    PartnerOrganisation,
    Subscription,
    Supporter,
    Suppression,
    email_hash,
)
from crm.services.audit import audit_event_add

# Statuses a supporter cannot be moved out of by granting consent: the
# address failed or its owner objected, and only they can undo that by
# signing up again from scratch.
UNMAILABLE_STATUSES = {
    Supporter.Status.BOUNCED,
    Supporter.Status.COMPLAINED,
    Supporter.Status.ERASED,
}
# Rows per INSERT in bulk writes: well inside PostgreSQL's 65,535 parameters a statement.
BULK_BATCH_SIZE = 2_000


def _record_consent(*, supporter_ids, topics, action, method, actor, actor_label, now, **details):
    """Write one consent record and one audit event per supporter and topic (None: all email)."""
    mailing = details.get("mailing")
    ConsentRecord.objects.bulk_create(
        (
            ConsentRecord(
                supporter_id=supporter_id,
                interest=topic,
                action=action,
                method=method,
                actor=actor,
                actor_label=actor_label,
                created_at=now,
                **details,
            )
            for supporter_id in supporter_ids
            for topic in topics
        ),
        batch_size=BULK_BATCH_SIZE,
    )
    kind = (
        AuditEvent.Kind.CONSENT_GRANTED
        if action == ConsentRecord.Action.GRANTED
        else AuditEvent.Kind.CONSENT_WITHDRAWN
    )
    AuditEvent.objects.bulk_create(
        (
            AuditEvent(
                kind=kind,
                supporter_id=supporter_id,
                actor=actor,
                source=actor_label or method,
                detail={
                    "interest": topic.slug if topic else None,
                    "method": method,
                    "mailing": mailing.pk if mailing else None,
                },
                created_at=now,
            )
            for supporter_id in supporter_ids
            for topic in topics
        ),
        batch_size=BULK_BATCH_SIZE,
    )


def consent_grant(
    *,
    supporter: Supporter,
    interest: CampaignInterest | None,
    method: str,
    lawful_basis: str = LawfulBasis.CONSENT,
    wording: str = "",
    wording_version: str = "",
    partner=None,
    import_batch=None,
    mailing=None,
    actor=None,
    actor_label: str = "",
    ip_address: str | None = None,
) -> bool:
    """Record consent to `interest` (or to email at all when None) and subscribe.

    Return True if anything changed. Refuse (ConsentRefused) for a suppressed,
    bounced, complained or erased supporter: their "no" stands.
    """
    with transaction.atomic():
        supporter = Supporter.objects.select_for_update().get(pk=supporter.pk)
        if supporter.status in UNMAILABLE_STATUSES or supporter.is_suppressed():
            raise ConsentRefused(
                "This supporter cannot be subscribed: their address is suppressed, bounced, "
                "complained or erased."
            )
        now = timezone.now()
        changed = False
        if interest is None:
            if supporter.status == Supporter.Status.UNSUBSCRIBED:
                supporter.status = Supporter.Status.ACTIVE
                supporter.save(update_fields=["status", "updated_at"])
                changed = True
        else:
            subscription, created = Subscription.objects.get_or_create(
                supporter=supporter,
                interest=interest,
                defaults={"status": Subscription.Status.SUBSCRIBED, "subscribed_at": now},
            )
            if not created and subscription.status != Subscription.Status.SUBSCRIBED:
                subscription.status = Subscription.Status.SUBSCRIBED
                subscription.subscribed_at = now
                subscription.save(update_fields=["status", "subscribed_at", "updated_at"])
                changed = True
            changed = changed or created
            if supporter.status == Supporter.Status.UNSUBSCRIBED:
                # Choosing a topic again is a "yes" to email.
                supporter.status = Supporter.Status.ACTIVE
                supporter.save(update_fields=["status", "updated_at"])
        if changed:
            _record_consent(
                supporter_ids=[supporter.pk],
                topics=[interest],
                action=ConsentRecord.Action.GRANTED,
                method=method,
                actor=actor,
                actor_label=actor_label,
                now=now,
                lawful_basis=lawful_basis,
                wording=wording,
                wording_version=wording_version,
                partner=partner,
                import_batch=import_batch,
                mailing=mailing,
                ip_address=ip_address,
            )
    return changed


def supporter_unsubscribe(
    *,
    supporter: Supporter,
    interest: CampaignInterest | None = None,
    interests=(),
    method: str,
    mailing=None,
    actor=None,
    actor_label: str = "",
    wording: str = "",
    ip_address: str | None = None,
) -> bool:
    """Withdraw consent for `interest` (and `interests`), or for all email if none is given.

    One transaction and one consent record per topic left, however many topics.
    Idempotent: return False and write nothing if the supporter was already
    unsubscribed from all of them.
    """
    topics = {topic.pk: topic for topic in [interest, *interests] if topic is not None}
    if topics and sql.in_use():
        found = sql.subscriptions_withdraw(
            supporter=supporter,
            scope=("i.id = ANY(%s)", [list(topics)]),
            method=method,
            mailing=mailing,
            actor=actor,
            actor_label=actor_label,
            wording=wording,
            ip_address=ip_address,
        )
        return any(topic.withdrawn for topic in found)
    with transaction.atomic():
        supporter = Supporter.objects.select_for_update().get(pk=supporter.pk)
        now = timezone.now()
        subscriptions = Subscription.objects.filter(
            supporter=supporter, status=Subscription.Status.SUBSCRIBED
        )
        if topics:
            subscriptions = subscriptions.filter(interest_id__in=topics)
            left = [topics[pk] for pk in subscriptions.values_list("interest_id", flat=True)]
        else:
            left = [None]
        changed = bool(
            subscriptions.update(
                status=Subscription.Status.UNSUBSCRIBED, unsubscribed_at=now, updated_at=now
            )
        )
        if not topics and supporter.status == Supporter.Status.ACTIVE:
            supporter.status = Supporter.Status.UNSUBSCRIBED
            supporter.save(update_fields=["status", "updated_at"])
            changed = True
        if changed:
            _record_consent(
                supporter_ids=[supporter.pk],
                topics=left,
                action=ConsentRecord.Action.WITHDRAWN,
                method=method,
                actor=actor,
                actor_label=actor_label,
                now=now,
                mailing=mailing,
                wording=wording,
                ip_address=ip_address,
            )
    return changed


def supporter_unsubscribe_from_mailing(
    *, supporter: Supporter, mailing, method: str, actor_label: str = ""
) -> list[CampaignInterest]:
    """Withdraw consent for the interests `mailing` was sent for; return those interests.

    One-click unsubscribe's way: on PostgreSQL, finding the mailing's interests
    and withdrawing from them is one statement. Writes what supporter_unsubscribe
    writes for them (and nothing for topics already left), naming the mailing.
    A mailing sent for no interest returns [] and changes nothing.
    """
    if sql.in_use():
        return sql.subscriptions_withdraw(
            supporter=supporter,
            scope=(sql.sent_for_mailing("i"), [mailing.pk]),
            method=method,
            mailing=mailing,
            actor_label=actor_label,
        )
    interests = list(CampaignInterest.objects.filter(mailings=mailing))
    if interests:
        supporter_unsubscribe(
            supporter=supporter,
            interests=interests,
            method=method,
            mailing=mailing,
            actor_label=actor_label,
        )
    return interests


def suppression_add(
    *, email: str = "", hashed: str = "", reason: str, actor=None, note: str = ""
) -> Suppression:
    """Put an address on the suppression list (idempotent); return its entry."""
    hashed = hashed or email_hash(email)
    entry, created = Suppression.objects.get_or_create(
        email_hash=hashed, defaults={"reason": reason, "created_by": actor, "note": note}
    )
    if not created and reason == Suppression.Reason.ERASURE and entry.reason != reason:
        # Erasure is the strongest reason: it also forbids adding the address again.
        entry.reason = reason
        entry.save(update_fields=["reason"])
    if created:
        audit_event_add(AuditEvent.Kind.SUPPRESSED, actor=actor, source=reason, reason=reason)
    return entry


def suppression_remove(*, entry: Suppression, actor) -> None:
    """Take an address off the suppression list, recording who did and what it said."""
    with transaction.atomic():
        audit_event_add(
            AuditEvent.Kind.UNSUPPRESSED,
            actor=actor,
            source="admin",
            reason=entry.reason,
            note=entry.note,
            added_at=entry.created_at.isoformat(),
        )
        entry.delete()


# How strong a "no" each status is: a complaint outranks a hard bounce, which
# outranks an unsubscribe at the ESP; erasure outranks everything.
UNDELIVERABLE_RANK = {
    Supporter.Status.UNSUBSCRIBED: 1,
    Supporter.Status.BOUNCED: 2,
    Supporter.Status.COMPLAINED: 3,
    Supporter.Status.ERASED: 4,
}


def supporter_mark_undeliverable(
    *, supporter: Supporter, status: str, method: str, mailing=None, actor_label: str = ""
) -> bool:
    """Mark a supporter bounced or complained, stop all email and suppress the address.

    Used by tracking webhooks. Idempotent: return False if nothing changed.
    The status only moves towards the strongest "no" (UNDELIVERABLE_RANK), so
    the ESP's events give the same outcome in whatever order they arrive.
    """
    reason = {
        Supporter.Status.BOUNCED: Suppression.Reason.HARD_BOUNCE,
        Supporter.Status.COMPLAINED: Suppression.Reason.COMPLAINT,
        Supporter.Status.UNSUBSCRIBED: Suppression.Reason.ESP_UNSUBSCRIBE,
    }[status]
    with transaction.atomic():
        changed = supporter_unsubscribe(
            supporter=supporter, method=method, mailing=mailing, actor_label=actor_label
        )
        supporter = Supporter.objects.select_for_update().get(pk=supporter.pk)
        if UNDELIVERABLE_RANK.get(supporter.status, 0) < UNDELIVERABLE_RANK[status]:
            supporter.status = status
            supporter.save(update_fields=["status", "updated_at"])
            changed = True
        suppression_add(hashed=supporter.email_hash, reason=reason, note=actor_label)
    return changed


@dataclass(frozen=True)
class BulkSubscription:
    """What a staff bulk subscribe did with the supporters it was given."""

    subscribed: int  # newly subscribed, with a consent record each
    already: int  # subscribed before
    opted_out: int  # unsubscribed from all email or from the interest: left alone
    unmailable: int  # bounced, complained, erased or suppressed: left alone


def _locked(supporters):
    """Return `supporters` afresh, their rows locked until the transaction ends.

    Every change of consent locks its supporter first, so nobody's choice
    changes between a bulk action's reading and its writing.
    """
    selected = Supporter.objects.filter(pk__in=supporters.values("pk"))
    list(selected.select_for_update().order_by("pk").values_list("pk", flat=True))
    return selected


def supporters_subscribe(
    *,
    supporters,
    interest: CampaignInterest,
    actor,
    method: str,
    actor_label: str = "staff bulk action",
    wording: str = "",
    wording_version: str = "",
    partner=None,
) -> BulkSubscription:
    """Subscribe `supporters` to `interest` (a staff bulk action), in one transaction.

    Staff cannot say yes for people who said no: supporters who unsubscribed
    from all email or from this interest are left as they are (imports leave
    them too; only they can subscribe again, from their preference link), and
    so are those who cannot be emailed at all. The API's batch upsert calls it
    too, with the consent evidence its client sent (`wording`, `partner`,
    `actor_label` naming the key and the source).
    """
    with transaction.atomic():
        now = timezone.now()
        selected = (
            _locked(supporters)
            .with_suppressed()
            .annotate(
                topic=Subquery(
                    Subscription.objects.filter(supporter=OuterRef("pk"), interest=interest).values(
                        "status"
                    )[:1]
                )
            )
        )
        left_all = Supporter.Status.UNSUBSCRIBED
        left_topic = Subscription.Status.UNSUBSCRIBED
        new, already, opted_out, unmailable = [], 0, 0, 0
        rows = selected.values_list("pk", "status", "topic", "suppressed").order_by("pk")
        for pk, status, topic, suppressed in rows:
            if suppressed or status in UNMAILABLE_STATUSES:
                unmailable += 1
            elif status == left_all or topic == left_topic:
                opted_out += 1
            elif topic == Subscription.Status.SUBSCRIBED:
                already += 1
            else:
                new.append(pk)
        evidence = {
            "lawful_basis": LawfulBasis.CONSENT,
            "wording": wording,
            "wording_version": wording_version,
            "partner": partner,
        }
        if new and sql.in_use():
            sql.subscriptions_grant(
                supporter_ids=new,
                interest=interest,
                method=method,
                actor=actor,
                actor_label=actor_label,
                now=now,
                **evidence,
            )
        elif new:
            Subscription.objects.bulk_create(
                (
                    Subscription(
                        supporter_id=pk,
                        interest=interest,
                        status=Subscription.Status.SUBSCRIBED,
                        subscribed_at=now,
                    )
                    for pk in new
                ),
                batch_size=BULK_BATCH_SIZE,
            )
            _record_consent(
                supporter_ids=new,
                topics=[interest],
                action=ConsentRecord.Action.GRANTED,
                method=method,
                actor=actor,
                actor_label=actor_label,
                now=now,
                **evidence,
            )
    return BulkSubscription(len(new), already, opted_out, unmailable)


def supporters_unsubscribe(
    *,
    supporters,
    interest: CampaignInterest,
    actor,
    method: str,
    actor_label: str = "staff bulk action",
) -> int:
    """Unsubscribe `supporters` from `interest` (a staff bulk action); return how many were in it.

    One transaction; a consent record and an audit event for each supporter who was
    subscribed, naming `actor_label` (a journey's step names its journey).
    """
    with transaction.atomic():
        now = timezone.now()
        subscriptions = Subscription.objects.filter(
            supporter__in=_locked(supporters).values("pk"),
            interest=interest,
            status=Subscription.Status.SUBSCRIBED,
        )
        left = list(subscriptions.order_by("supporter_id").values_list("supporter_id", flat=True))
        subscriptions.update(
            status=Subscription.Status.UNSUBSCRIBED, unsubscribed_at=now, updated_at=now
        )
        _record_consent(
            supporter_ids=left,
            topics=[interest],
            action=ConsentRecord.Action.WITHDRAWN,
            method=method,
            actor=actor,
            actor_label=actor_label,
            now=now,
        )
    return len(left)


def consents_grant_bulk(
    *, grants, import_batch, actor=None, actor_label: str = "", now=None
) -> int:
    """Subscribe and record consent for a partner import's grants; return how many.

    `grants` is a list of (supporter id, interest id, partner id) with no
    subscription yet: the caller (import_confirm) applies a plan that left
    out anyone suppressed or opted out, after checking under locks that
    nothing changed since (crm_subscription_unique refuses a second
    subscription). Each gets a subscription and a "granted" consent record
    by partner import, with the partner's lawful basis as it is now, naming
    `import_batch`, `actor` and `actor_label`. The caller records one audit
    event for the whole batch, so none is written per row.

    The import's hot path: on PostgreSQL one statement writes both
    (crm.sql.import_subscribe); elsewhere the ORM bulk-inserts them.
    """
    grants = list(grants)
    if not grants:
        return 0
    now = now or timezone.now()
    actor_id = actor.pk if actor else None
    if sql.in_use():
        sql.import_subscribe(
            grants, batch_id=import_batch.pk, actor_id=actor_id, label=actor_label, now=now
        )
        return len(grants)
    bases = dict(
        PartnerOrganisation.objects.filter(
            pk__in={partner_id for _, _, partner_id in grants}
        ).values_list("pk", "lawful_basis")
    )
    Subscription.objects.bulk_create(
        [
            Subscription(
                supporter_id=supporter_id,
                interest_id=interest_id,
                status=Subscription.Status.SUBSCRIBED,
                subscribed_at=now,
                unsubscribed_at=None,
                updated_at=now,
            )
            for supporter_id, interest_id, _ in grants
        ]
    )
    ConsentRecord.objects.bulk_create(
        [
            ConsentRecord(
                supporter_id=supporter_id,
                interest_id=interest_id,
                action=ConsentRecord.Action.GRANTED,
                method=ConsentRecord.Method.PARTNER_IMPORT,
                lawful_basis=bases[partner_id],
                wording="",
                wording_version="",
                partner_id=partner_id,
                import_batch_id=import_batch.pk,
                actor_id=actor_id,
                actor_label=actor_label,
                created_at=now,
            )
            for supporter_id, interest_id, partner_id in grants
        ]
    )
    return len(grants)


def consents_withdraw_bulk(
    *,
    withdrawals,
    method: str,
    lawful_basis: str,
    partner=None,
    import_batch=None,
    actor=None,
    actor_label: str = "",
    now=None,
) -> int:
    """Take back consents given in bulk (an import's revert); return how many.

    `withdrawals` is a list of (subscription id, supporter id, interest id):
    subscriptions a bulk grant created and nothing has changed since. Each
    subscription row goes, which puts the supporter back as they were before
    the grant, and a "withdrawn" consent record naming `method`,
    `import_batch` and `actor_label` is appended, so the history keeps both
    the grant and its reversal. The row is removed rather than marked
    unsubscribed because the supporter never said no: an unsubscribed topic
    is their refusal, which imports and staff must then respect for good.
    The caller locks the supporters and records one audit event for the
    whole action (as imports do for their grants), so none is written per row.
    """
    now = now or timezone.now()
    withdrawals = list(withdrawals)
    for start in range(0, len(withdrawals), BULK_BATCH_SIZE):
        chunk = withdrawals[start : start + BULK_BATCH_SIZE]
        Subscription.objects.filter(pk__in=[pk for pk, _, _ in chunk]).delete()
        ConsentRecord.objects.bulk_create(
            ConsentRecord(
                supporter_id=supporter_id,
                interest_id=interest_id,
                action=ConsentRecord.Action.WITHDRAWN,
                method=method,
                lawful_basis=lawful_basis,
                partner=partner,
                import_batch=import_batch,
                actor=actor,
                actor_label=actor_label,
                created_at=now,
            )
            for _, supporter_id, interest_id in chunk
        )
    return len(withdrawals)


def supporters_delete_unused_import(*, supporter_ids) -> int:
    """Delete supporters an import created that nothing has used since; return how many.

    This is the one place besides supporter_erase() that removes consent
    records, and only these: the caller (import_revert) passes supporters
    the batch itself created whose only consent records are the batch's own
    grants, with no edit, tag, segment, other consent, audit event, delivery
    or anything else pointing at them since. No email was sent on those
    grants and nothing else relied on them, so their history proves nothing
    that must remain; keeping it would keep the person, whose address a
    partner may have shared by mistake. Anyone touched since is kept, and
    their grants are withdrawn instead (consents_withdraw_bulk). The batch's
    own audit event keeps the count, without addresses.
    """
    supporter_ids = sorted(supporter_ids)
    history = Supporter.history.model
    for start in range(0, len(supporter_ids), BULK_BATCH_SIZE):
        chunk = supporter_ids[start : start + BULK_BATCH_SIZE]
        # Raw deletes: the ORM's cascade would load and signal each row.
        ConsentRecord.objects.filter(supporter_id__in=chunk)._erase()
        Subscription.objects.filter(supporter_id__in=chunk)._raw_delete(connection.alias)
        history.objects.filter(id__in=chunk)._raw_delete(connection.alias)
        Supporter.objects.filter(pk__in=chunk)._raw_delete(connection.alias)
    return len(supporter_ids)
