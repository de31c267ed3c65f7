"""The rest of the audience waits for the winner, then gets it, and only it, exactly once."""

import datetime
from collections import Counter

import pytest
import time_machine
from django.utils import timezone

from mailings import abtests, services
from mailings.models import Delivery, Mailing
from tests.abtests.conftest import SUBJECTS, ab_mailing, drain, start

pytestmark = pytest.mark.django_db


def subjects_by_address(esp):
    return {record.address: record.subject for record in esp.messages()}


def click(mailing, label, count):
    """Record that `count` of variant `label`'s test recipients clicked."""
    variant = mailing.variants.get(position="AB".index(label))
    ids = list(
        Delivery.objects.filter(mailing=mailing, variant=variant, in_ab_test=True).values_list(
            "pk", flat=True
        )[:count]
    )
    Delivery.objects.filter(pk__in=ids).update(clicked_at=timezone.now())


def test_the_rest_are_held_until_staff_choose_then_get_only_the_winner(
    postmark_esp, interest, readers, campaign_user, django_capture_on_commit_callbacks
):
    """Test recipients get their variant's subject; nobody else gets anything until the choice."""
    mailing = ab_mailing(interest, choose="staff")
    start(mailing, campaign_user, django_capture_on_commit_callbacks)

    assert drain(mailing) == "idle"
    sent = subjects_by_address(postmark_esp)
    assert len(sent) == 20
    test_rows = Delivery.objects.filter(mailing=mailing, in_ab_test=True).select_related(
        "supporter", "variant"
    )
    for row in test_rows:
        assert sent[row.supporter.email] == row.variant.subject
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.SENDING  # the held half is unfinished work

    # Time is up, but this test is left to staff: beat chooses nothing.
    with time_machine.travel(timezone.now() + datetime.timedelta(hours=5)):
        assert abtests.abtests_finish_due() == []
    assert Delivery.objects.filter(mailing=mailing, status=Delivery.Status.HELD).count() == 20

    variant_b = mailing.variants.get(position=1)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        abtests.abtest_choose_winner(mailing=mailing, variant=variant_b, actor=campaign_user)
    assert queued  # senders start once the choice is committed
    assert drain(mailing) == "idle"

    assert sorted(Counter(postmark_esp.recipients()).values()) == [1] * len(readers)
    sent = subjects_by_address(postmark_esp)
    rest = Delivery.objects.filter(mailing=mailing, in_ab_test=False).select_related("supporter")
    assert {sent[row.supporter.email] for row in rest} == {SUBJECTS[1]}
    assert set(rest.values_list("variant", flat=True)) == {variant_b.pk}
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.SENT
    mailing.ab_test.refresh_from_db()
    assert mailing.ab_test.winner == variant_b
    assert mailing.ab_test.winner_chosen_by == campaign_user


def test_beat_sends_the_variant_with_more_clicks_when_time_is_up(
    postmark_esp, interest, readers, campaign_user, django_capture_on_commit_callbacks
):
    mailing = ab_mailing(interest, hours=2)
    start(mailing, campaign_user, django_capture_on_commit_callbacks)
    drain(mailing)
    click(mailing, "A", 2)
    click(mailing, "B", 6)

    with time_machine.travel(timezone.now() + datetime.timedelta(hours=1)):
        assert abtests.abtests_finish_due() == []  # not yet
    with (
        time_machine.travel(timezone.now() + datetime.timedelta(hours=2, minutes=1)),
        django_capture_on_commit_callbacks(execute=False),
    ):
        assert abtests.abtests_finish_due() == [mailing.pk]
    drain(mailing)

    mailing.ab_test.refresh_from_db()
    assert mailing.ab_test.winner.label == "B"
    assert mailing.ab_test.winner_chosen_by is None
    assert sorted(Counter(postmark_esp.recipients()).values()) == [1] * len(readers)
    rest = Delivery.objects.filter(mailing=mailing, in_ab_test=False).select_related("supporter")
    sent = subjects_by_address(postmark_esp)
    assert {sent[row.supporter.email] for row in rest} == {SUBJECTS[1]}


def test_a_winner_cannot_be_chosen_twice(
    tested, readers, campaign_user, django_capture_on_commit_callbacks
):
    start(tested, campaign_user, django_capture_on_commit_callbacks)
    a, b = tested.variants.all()
    with django_capture_on_commit_callbacks(execute=False):
        abtests.abtest_choose_winner(mailing=tested, variant=a, actor=campaign_user)
        # The same choice again (a double click) is harmless.
        abtests.abtest_choose_winner(mailing=tested, variant=a, actor=campaign_user)
    with pytest.raises(services.MailingRefused, match="Variant A was already chosen"):
        abtests.abtest_choose_winner(mailing=tested, variant=b, actor=campaign_user)
    assert Delivery.objects.filter(mailing=tested, variant=b, in_ab_test=False).exists() is False


def test_held_deliveries_left_by_a_crash_after_the_choice_are_released_by_beat(
    tested, readers, campaign_user, django_capture_on_commit_callbacks
):
    """A winner recorded but its held deliveries still held (a crash mid-release) is finished."""
    start(tested, campaign_user, django_capture_on_commit_callbacks)
    a = tested.variants.get(position=0)
    type(tested.ab_test).objects.filter(pk=tested.ab_test.pk).update(winner=a)

    with django_capture_on_commit_callbacks(execute=False) as queued:
        abtests.abtests_finish_due()
    assert queued
    assert Delivery.objects.filter(mailing=tested, status=Delivery.Status.HELD).count() == 0
    assert Delivery.objects.filter(mailing=tested, in_ab_test=False, variant=a).count() == 20


def test_cancelling_during_the_test_cancels_the_held(
    tested, readers, campaign_user, django_capture_on_commit_callbacks
):
    start(tested, campaign_user, django_capture_on_commit_callbacks)
    services.mailing_cancel(mailing=tested, actor=campaign_user)
    assert Delivery.objects.filter(mailing=tested, status=Delivery.Status.HELD).count() == 0
    assert Delivery.objects.filter(mailing=tested, status=Delivery.Status.CANCELLED).count() == 40
    with pytest.raises(services.MailingRefused, match="cancelled: no winner"):
        abtests.abtest_choose_winner(mailing=tested)


def test_a_paused_mailing_waits_for_staff_before_its_winner_is_chosen(
    tested, readers, campaign_user, django_capture_on_commit_callbacks
):
    start(tested, campaign_user, django_capture_on_commit_callbacks)
    services.mailing_pause(mailing=tested, actor=campaign_user)
    with time_machine.travel(timezone.now() + datetime.timedelta(hours=5)):
        assert abtests.abtests_finish_due() == []
