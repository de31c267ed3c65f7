"""Every recipient is in exactly one variant, always the same one, and the rest wait."""

from collections import Counter

import pytest

from mailings import abtests, services
from mailings.models import Delivery, Variant
from tests.abtests.conftest import ab_mailing, start

pytestmark = pytest.mark.django_db


def test_each_recipient_is_in_one_variant_or_held_for_the_winner(
    tested, readers, campaign_user, django_capture_on_commit_callbacks
):
    """Half the audience is split evenly between A and B; the other half is held."""
    start(tested, campaign_user, django_capture_on_commit_callbacks)

    deliveries = Delivery.objects.filter(mailing=tested)
    assert deliveries.count() == len(readers)
    assert deliveries.values("supporter").distinct().count() == len(readers)
    variants = {v.pk: v.label for v in Variant.objects.filter(mailing=tested)}
    split = Counter(
        variants[pk] for pk in deliveries.filter(in_ab_test=True).values_list("variant", flat=True)
    )
    assert split == {"A": 10, "B": 10}
    held = deliveries.filter(status=Delivery.Status.HELD)
    assert held.count() == 20
    assert held.filter(in_ab_test=True).exists() is False
    assert held.filter(variant__isnull=False).exists() is False
    assert deliveries.filter(in_ab_test=True, status=Delivery.Status.QUEUED).count() == 20
    tested.ab_test.refresh_from_db()
    assert tested.ab_test.ends_at is not None


def test_assignment_is_the_same_every_time(
    interest, readers, campaign_user, django_capture_on_commit_callbacks
):
    """The split is a hash of mailing and supporter: resolving again gives the same variants."""
    mailing = ab_mailing(interest, variants=3, percent=60)
    start(mailing, campaign_user, django_capture_on_commit_callbacks)
    first = dict(
        Delivery.objects.filter(mailing=mailing).values_list("supporter", "variant__position")
    )
    Delivery.objects.filter(mailing=mailing).update(
        status=Delivery.Status.QUEUED, variant=None, in_ab_test=False
    )
    abtests.deliveries_assign_variants(mailing=mailing)
    again = dict(
        Delivery.objects.filter(mailing=mailing).values_list("supporter", "variant__position")
    )
    assert again == first
    assert Counter(p for p in first.values() if p is not None) == {0: 8, 1: 8, 2: 8}


def test_a_tiny_audience_is_all_in_the_test(
    interest, campaign_user, django_capture_on_commit_callbacks
):
    """Three readers and a 20% test with two variants: everyone gets a variant, nobody waits."""
    from tests.abtests.conftest import make_readers

    make_readers(interest, 3)
    mailing = ab_mailing(interest, percent=20)
    start(mailing, campaign_user, django_capture_on_commit_callbacks)
    deliveries = Delivery.objects.filter(mailing=mailing)
    assert deliveries.filter(status=Delivery.Status.HELD).count() == 0
    assert deliveries.filter(in_ab_test=True).count() == 3


def test_a_test_with_one_variant_is_refused_before_sending(interest, readers, campaign_user):
    mailing = ab_mailing(interest, variants=1)
    with pytest.raises(services.MailingRefused, match="two to four variants"):
        services.mailing_send_now(mailing=mailing, actor=campaign_user)


def test_variants_without_test_settings_are_refused(interest, readers, campaign_user):
    mailing = ab_mailing(interest)
    mailing.ab_test.delete()
    with pytest.raises(services.MailingRefused, match="set up the A/B test"):
        services.mailing_send_now(mailing=mailing, actor=campaign_user)


def test_a_variant_with_an_unknown_merge_field_is_refused(tested, readers, campaign_user):
    Variant.objects.filter(mailing=tested, position=1).update(subject="Hello {{ nickname }}")
    with pytest.raises(services.MailingRefused, match="variant B: Unknown merge field"):
        services.mailing_send_now(mailing=tested, actor=campaign_user)


def test_duplicating_keeps_the_test_and_its_variants(tested, campaign_user):
    copy = services.mailing_duplicate(mailing=tested, actor=campaign_user)
    assert copy.ab_test.test_percent == 50
    assert [v.subject for v in copy.variants.all()] == [v.subject for v in tested.variants.all()]
