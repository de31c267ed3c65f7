"""The status workflow: draft → scheduled → sending → sent, with pause, resume and cancel."""

import datetime

import pytest
import time_machine
from django.utils import timezone

from mailings import services
from mailings.models import Delivery, Mailing
from mailings.services import MailingRefused
from tests.factories import MailingFactory

pytestmark = pytest.mark.django_db


def test_scheduled_mailing_starts_when_due_and_only_once(
    newsletter, subscribers, campaign_user, django_capture_on_commit_callbacks
):
    send_at = timezone.now() + datetime.timedelta(hours=2)
    services.mailing_schedule(mailing=newsletter, send_at=send_at, actor=campaign_user)
    assert newsletter.status == Mailing.Status.SCHEDULED

    assert services.mailings_dispatch_due() == []
    due = time_machine.travel(send_at + datetime.timedelta(seconds=1))
    with due, django_capture_on_commit_callbacks(execute=False) as queued:
        assert services.mailings_dispatch_due() == [newsletter.pk]
        assert services.mailings_dispatch_due() == []

    newsletter.refresh_from_db()
    assert newsletter.status == Mailing.Status.SENDING
    assert len(queued) == 1


def test_schedule_refuses_a_time_in_the_past(newsletter, campaign_user):
    with pytest.raises(MailingRefused, match="time in the future"):
        services.mailing_schedule(
            mailing=newsletter,
            send_at=timezone.now() - datetime.timedelta(minutes=1),
            actor=campaign_user,
        )


def test_unscheduling_returns_to_draft(newsletter, campaign_user):
    services.mailing_schedule(
        mailing=newsletter, send_at=timezone.now() + datetime.timedelta(days=1), actor=campaign_user
    )
    services.mailing_unschedule(mailing=newsletter, actor=campaign_user)

    assert newsletter.status == Mailing.Status.DRAFT
    assert newsletter.scheduled_at is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"subject": ""}, "add a subject"),
        ({"blocks": []}, "write the body"),
        ({"blocks": [{"type": "text", "html": "<p>Hi {{ nickname }}</p>"}]}, "Unknown merge field"),
    ],
)
def test_sending_refuses_an_unfinished_mailing(newsletter, campaign_user, change, message):
    Mailing.objects.filter(pk=newsletter.pk).update(**change)
    newsletter.refresh_from_db()

    with pytest.raises(MailingRefused, match=message):
        services.mailing_send_now(mailing=newsletter, actor=campaign_user)
    newsletter.refresh_from_db()
    assert newsletter.status == Mailing.Status.DRAFT


def test_sending_needs_an_audience(campaign_user):
    mailing = MailingFactory()

    with pytest.raises(MailingRefused, match="choose at least one interest or segment"):
        services.mailing_send_now(mailing=mailing, actor=campaign_user)


def test_empty_audience_finishes_at_once(
    newsletter, campaign_user, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        services.mailing_send_now(mailing=newsletter, actor=campaign_user)
    services.mailing_start(mailing_id=newsletter.pk)
    from mailings.sending import deliveries_sweep

    deliveries_sweep()

    newsletter.refresh_from_db()
    assert newsletter.recipient_count == 0
    assert newsletter.status == Mailing.Status.SENT


def test_pause_resume_and_cancel(
    newsletter, subscribers, campaign_user, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        services.mailing_send_now(mailing=newsletter, actor=campaign_user)
    services.mailing_start(mailing_id=newsletter.pk)

    services.mailing_pause(mailing=newsletter, actor=campaign_user)
    assert newsletter.status == Mailing.Status.PAUSED
    with django_capture_on_commit_callbacks(execute=False) as queued:
        services.mailing_resume(mailing=newsletter, actor=campaign_user)
    assert newsletter.status == Mailing.Status.SENDING
    assert queued, "resuming starts the senders again"

    services.mailing_cancel(mailing=newsletter, actor=campaign_user)

    assert newsletter.status == Mailing.Status.CANCELLED
    assert set(Delivery.objects.filter(mailing=newsletter).values_list("status", flat=True)) == {
        "cancelled"
    }


def test_impossible_transitions_are_refused_with_a_reason(newsletter, campaign_user):
    with pytest.raises(MailingRefused, match="is draft, so it cannot be paused"):
        services.mailing_pause(mailing=newsletter, actor=campaign_user)
    services.mailing_cancel(mailing=newsletter, actor=campaign_user)
    with pytest.raises(MailingRefused, match="is cancelled"):
        services.mailing_send_now(mailing=newsletter, actor=campaign_user)


def test_edits_are_refused_once_sending_started(
    newsletter, campaign_user, django_capture_on_commit_callbacks
):
    services.mailing_update_check(mailing=newsletter)  # a draft may change
    with django_capture_on_commit_callbacks(execute=False):
        services.mailing_send_now(mailing=newsletter, actor=campaign_user)

    with pytest.raises(MailingRefused, match="can no longer be edited"):
        services.mailing_update_check(mailing=newsletter)


def test_duplicate_makes_an_editable_copy(newsletter, campaign_user):
    copy = services.mailing_duplicate(mailing=newsletter, actor=campaign_user)

    assert copy.status == Mailing.Status.DRAFT
    assert copy.blocks == newsletter.blocks
    assert list(copy.interests.all()) == list(newsletter.interests.all())
