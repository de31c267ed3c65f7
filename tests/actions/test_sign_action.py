"""Signing an action: counted once per person, consent only where a box was ticked."""

import pytest
from django.core import mail

from crm.models import ConsentRecord, PartnerConsent, Subscription, Supporter
from mailings.actions import services, tasks, tokens
from mailings.actions.models import Signature, wording_version

pytestmark = pytest.mark.django_db


def test_signing_without_opt_ins_counts_but_subscribes_nobody(petition):
    """A signature alone creates the person and the signature, and no consent of any kind."""
    signature = services.action_sign(
        action=petition, email="Nadia@Example.org ", first_name="Nadia", postcode="e1 6an"
    )
    assert signature.counted is True
    supporter = Supporter.objects.get(pk=signature.supporter_id)
    assert supporter.email == "Nadia@Example.org"
    assert supporter.source == Supporter.Source.PETITION
    assert supporter.postcode == "E1 6AN"
    assert not Subscription.objects.filter(supporter=supporter).exists()
    assert not ConsentRecord.objects.filter(supporter=supporter).exists()
    assert not PartnerConsent.objects.filter(supporter=supporter).exists()
    assert signature.confirmation == Signature.Confirmation.NONE
    assert mail.outbox == []


def test_signing_twice_counts_once_and_adds_the_new_opt_in(
    petition, django_capture_on_commit_callbacks, tasks_run_now
):
    """The second signature by the same address (any case) is the first one, with the new yes."""
    first = services.action_sign(action=petition, email="nadia@example.org")
    with django_capture_on_commit_callbacks(execute=True):
        second = services.action_sign(action=petition, email="NADIA@example.org", opt_in=True)
    assert second.pk == first.pk
    assert second.counted is False
    assert Signature.objects.filter(action=petition).count() == 1
    assert second.opted_in is True
    assert second.confirmation == Signature.Confirmation.PENDING
    assert len(mail.outbox) == 1


def test_opt_ins_wait_for_the_emailed_confirmation(
    petition, interest, aegis, stand, django_capture_on_commit_callbacks, tasks_run_now, settings
):
    """With double opt-in, ticking boxes records nothing until the emailed link is confirmed."""
    settings.RALLY_RECORD_IP = True
    with django_capture_on_commit_callbacks(execute=True):
        signature = services.action_sign(
            action=petition,
            email="nadia@example.org",
            first_name="Nadia",
            opt_in=True,
            partner_opt_ins=["aegis"],
            ip="203.0.113.9",
            page_url="https://rally.example.org/act/el-fasher/",
        )
    supporter = signature.supporter
    assert not Subscription.objects.filter(supporter=supporter).exists()
    assert not PartnerConsent.objects.filter(supporter=supporter).exists()
    (message,) = mail.outbox
    assert message.to == ["nadia@example.org"]
    assert "Aegis Trust" in message.body and "Stand UK" not in message.body
    token = tokens.make_confirm_token(signature)
    assert f"/act/confirm/{token}/" in message.body or "/act/confirm/" in message.body

    services.action_signature_confirm(signature=signature)
    services.action_signature_confirm(signature=signature)  # a second click writes nothing

    subscription = Subscription.objects.get(supporter=supporter, interest=interest)
    assert subscription.status == Subscription.Status.SUBSCRIBED
    (record,) = ConsentRecord.objects.filter(supporter=supporter)
    assert record.method == ConsentRecord.Method.ACTION_PAGE
    assert record.wording == petition.charity_wording()
    assert record.wording_version == wording_version(petition.charity_wording())
    assert record.ip_address == "203.0.113.9"
    assert record.actor_label == "action page: el-fasher"
    (opt_in,) = PartnerConsent.objects.filter(supporter=supporter)
    assert opt_in.partner == aegis
    assert opt_in.action == PartnerConsent.Action.GRANTED
    assert opt_in.fields == ["first_name", "last_name", "postcode"]
    assert "Aegis Trust may email me" in opt_in.wording
    assert "https://www.aegistrust.org/privacy/" in opt_in.wording
    assert opt_in.page_url == "https://rally.example.org/act/el-fasher/"
    assert opt_in.ip_address == "203.0.113.9"
    assert not PartnerConsent.objects.filter(partner=stand).exists()


def test_a_confirmation_whose_task_was_lost_is_sent_by_the_sweep(petition, tasks_run_now):
    """The signature is its own outbox: beat's sweep emails what no queued task did, once."""
    # Signed, but the task its commit would queue never ran (a broker lost it).
    signature = services.action_sign(action=petition, email="nadia@example.org", opt_in=True)
    assert mail.outbox == []

    tasks.send_confirmations.delay()
    tasks.send_confirmations.delay()

    (message,) = mail.outbox
    assert message.to == ["nadia@example.org"]
    signature.refresh_from_db()
    assert signature.emailed_at is not None
    assert signature.confirmation == Signature.Confirmation.PENDING


def test_each_new_choice_is_emailed_once(
    petition, django_capture_on_commit_callbacks, tasks_run_now
):
    """Every signer with a box ticked gets one email; signing again with a new box, one more."""
    with django_capture_on_commit_callbacks(execute=True):
        for n in range(3):
            services.action_sign(action=petition, email=f"p{n}@example.org", opt_in=True)
    with django_capture_on_commit_callbacks(execute=True):
        services.action_sign(action=petition, email="p0@example.org", opt_in=True)  # nothing new
    with django_capture_on_commit_callbacks(execute=True):
        services.action_sign(action=petition, email="p1@example.org", partner_opt_ins=["aegis"])

    assert sorted(message.to[0] for message in mail.outbox) == [
        "p0@example.org",
        "p1@example.org",
        "p1@example.org",
        "p2@example.org",
    ]
    assert "Aegis Trust" in mail.outbox[-1].body
    assert not Signature.objects.filter(emailed_at__isnull=True, confirmation="pending").exists()


def test_without_double_opt_in_each_box_is_recorded_at_once(petition, interest, stand, settings):
    """Where the sign-up flow does not require confirmation, consent is recorded on signing."""
    settings.RALLY_ACTIONS_DOUBLE_OPT_IN = False
    signature = services.action_sign(
        action=petition, email="nadia@example.org", first_name="Nadia", partner_opt_ins=["stand-uk"]
    )
    supporter = signature.supporter
    assert not Subscription.objects.filter(supporter=supporter).exists()
    (opt_in,) = PartnerConsent.objects.filter(supporter=supporter)
    assert opt_in.partner == stand
    assert opt_in.fields == ["first_name"]
    assert signature.confirmation == Signature.Confirmation.CONFIRMED
    assert mail.outbox == []


def test_signature_from_a_partner_link_is_attributed_to_the_partner(petition, aegis):
    """?source=<co-sponsor slug> names the partner on the signature, not as the person's origin.

    A supporter "from" a partner is in that partner's sync export; signing on
    the partner's page without ticking its box must not put them there.
    """
    signature = services.action_sign(action=petition, email="nadia@example.org", source="aegis")
    assert signature.source == "aegis"
    assert signature.source_partner == aegis
    assert signature.supporter.partner is None
    other = services.action_sign(action=petition, email="omar@example.org", source="newsletter")
    assert other.source == "newsletter"
    assert other.source_partner is None


def test_signing_refuses_an_unknown_partner_and_an_outdated_wording(petition):
    """Bad input is refused with what to fix, and nothing is saved."""
    with pytest.raises(services.SignatureRejected, match="waging-peace does not co-sponsor"):
        services.action_sign(
            action=petition, email="nadia@example.org", partner_opt_ins=["waging-peace"]
        )
    with pytest.raises(services.SignatureRejected, match="opt-in wording has changed"):
        services.action_sign(
            action=petition, email="nadia@example.org", opt_in=True, wording_version="sha256:old"
        )
    with pytest.raises(services.SignatureRejected, match="Enter an email address"):
        services.action_sign(action=petition, email="not an address")
    assert not Signature.objects.exists()
    assert not Supporter.objects.exists()


def test_an_existing_supporter_keeps_their_details(petition, supporter):
    """Signing fills in empty details only; it never overwrites what we hold."""
    services.action_sign(
        action=petition, email="alice@example.org", first_name="Mallory", postcode="N1 9GU"
    )
    supporter.refresh_from_db()
    assert supporter.first_name == "Alice"
    assert supporter.postcode == "SW1A 1AA"


def test_an_erased_address_cannot_sign_and_is_not_added_again(petition, supporter):
    """Whoever asked to be forgotten is not recreated by a signature in their name."""
    from crm.services import supporter_erase

    supporter_erase(supporter=supporter)
    with pytest.raises(services.SignatureRejected, match="cannot sign"):
        services.action_sign(action=petition, email="Alice@example.org")
    assert not Signature.objects.exists()
    assert Supporter.objects.count() == 1


def test_country_and_phone_are_kept_only_when_the_action_asks(petition):
    """Fields the action does not ask are dropped, whatever is posted."""
    signature = services.action_sign(
        action=petition, email="nadia@example.org", country="fr", phone="07700 900123"
    )
    assert (signature.supporter.country.code, signature.supporter.phone) == ("GB", "")
    petition.fields = ["first_name", "country", "phone"]
    petition.save()
    signature = services.action_sign(
        action=petition, email="omar@example.org", country="fr", phone="07700 900123"
    )
    assert (signature.supporter.country.code, signature.supporter.phone) == ("FR", "07700 900123")
