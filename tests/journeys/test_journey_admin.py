"""Campaign managers build, start, pause and read journeys in the admin."""

import re

import pytest
from django.urls import reverse

from mailings.journeys.models import Journey, JourneyStep
from mailings.models import Mailing
from tests.journeys.conftest import sign_up, tick_and_send

pytestmark = pytest.mark.django_db


def _change(journey):
    return reverse("admin:journeys_journey_change", args=[journey.pk])


def _do(journey, action):
    return reverse("admin:journeys_journey_action", args=[journey.pk, action])


def test_a_campaign_manager_adds_a_journey_with_its_steps(client, campaign_user, interest):
    """The add page saves the journey and its steps; an email step gets its email to write."""
    client.force_login(campaign_user)
    data = {
        "name": "Welcome series",
        "description": "",
        "trigger": "signup",
        "entry": "once",
        "interests": [interest.pk],
        "steps-TOTAL_FORMS": "2",
        "steps-INITIAL_FORMS": "0",
        "steps-MIN_NUM_FORMS": "0",
        "steps-MAX_NUM_FORMS": "1000",
        "steps-0-position": "1",
        "steps-0-kind": "email",
        "steps-1-position": "2",
        "steps-1-kind": "wait",
        "steps-1-wait_days": "2",
    }
    response = client.post(reverse("admin:journeys_journey_add"), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    journey = Journey.objects.get()
    email = journey.steps.get(position=1)
    assert email.mailing.kind == Mailing.Kind.JOURNEY
    page = client.get(_change(journey))
    assert "Write the email" in page.content.decode()
    assert "Step 1: write the email" in page.content.decode()


def test_two_steps_with_one_number_are_refused(client, campaign_user, interest):
    client.force_login(campaign_user)
    data = {
        "name": "Muddled",
        "trigger": "signup",
        "entry": "once",
        "interests": [interest.pk],
        "steps-TOTAL_FORMS": "2",
        "steps-INITIAL_FORMS": "0",
        "steps-MIN_NUM_FORMS": "0",
        "steps-MAX_NUM_FORMS": "1000",
        "steps-0-position": "1",
        "steps-0-kind": "end",
        "steps-1-position": "1",
        "steps-1-kind": "end",
    }
    response = client.post(reverse("admin:journeys_journey_add"), data)
    assert response.status_code == 200
    assert "Two steps are numbered 1" in response.content.decode()
    assert not Journey.objects.exists()


def test_start_pause_and_report_buttons(client, campaign_user, welcome, newcomer, interest):
    """Start makes it live; the report says who is where; pause holds it."""
    client.force_login(campaign_user)
    client.post(_do(welcome, "start"))
    welcome.refresh_from_db()
    assert welcome.status == Journey.Status.LIVE
    sign_up(newcomer, interest)
    tick_and_send()
    report = client.get(reverse("admin:journeys_journey_report", args=[welcome.pk]))
    assert report.status_code == 200
    versions = report.context["report"]["versions"]
    first, wait = versions[0][1][0], versions[0][1][1]
    assert (first.entered, first.sent) == (1, 1)
    assert wait.waiting == 1
    page = client.get(_change(welcome)).content.decode()
    there_now = re.findall(r'class="field-there_now">\s*<p>([\d,]+)</p>', page)
    assert there_now == ["0", "1", "0", "0", "0"]
    client.post(_do(welcome, "pause"))
    welcome.refresh_from_db()
    assert welcome.status == Journey.Status.PAUSED


def test_a_live_journeys_steps_change_only_as_a_new_version(client, campaign_user, live_welcome):
    """The live steps are read-only until staff choose "Change the steps"."""
    client.force_login(campaign_user)
    page = client.get(_change(live_welcome)).content.decode()
    assert "Change the steps" in page
    assert 'name="steps-0-position"' not in page
    # Each live step reads as one sentence, not a row of empty columns.
    assert "Wait 2 days" in page
    assert "Send “Welcome" in page
    assert ">Condition<" not in page
    client.post(_do(live_welcome, "edit"))
    page = client.get(_change(live_welcome)).content.decode()
    assert 'name="steps-0-position"' in page
    assert "You are changing the steps (version 2)" in page
    assert JourneyStep.objects.filter(journey=live_welcome, version=2).count() == 5


def test_membership_staff_cannot_start_a_journey(client, membership_user, welcome):
    client.force_login(membership_user)
    assert client.post(_do(welcome, "start")).status_code == 403
    welcome.refresh_from_db()
    assert welcome.status == Journey.Status.DRAFT


def test_journey_emails_are_not_in_the_newsletter_list(client, campaign_user, welcome, r2p_mailing):
    client.force_login(campaign_user)
    page = client.get(reverse("admin:mailings_mailing_changelist")).content.decode()
    assert "R2P update" in page
    assert "Welcome series: email at step 1" not in page


def test_a_journey_email_has_no_buttons_of_its_own(live_welcome, campaign_user):
    """Pausing or cancelling one of a journey's emails is refused: the journey decides."""
    from mailings import services as mailing_services
    from mailings.exceptions import MailingRefused

    mailing = Mailing.objects.filter(kind="journey").first()
    with pytest.raises(MailingRefused, match="is a journey's email"):
        mailing_services.mailing_pause(mailing=mailing, actor=campaign_user)
    with pytest.raises(MailingRefused, match="is a journey's email"):
        mailing_services.mailing_cancel(mailing=mailing, actor=campaign_user)
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.SENDING


def test_the_admin_home_does_not_list_journey_emails_as_sending(live_welcome):
    """A live journey's emails are always "sending"; the home page's list is of newsletters."""
    from project import dashboard

    assert Mailing.objects.filter(kind="journey", status="sending").exists()
    assert dashboard._mailings_now() == []


def test_a_live_journeys_email_can_be_corrected(client, campaign_user, live_welcome):
    """Its page opens for editing, and the service that guards edits lets it through."""
    from mailings import services as mailing_services

    mailing = Mailing.objects.filter(kind="journey").first()
    client.force_login(campaign_user)
    page = client.get(reverse("admin:mailings_mailing_change", args=[mailing.pk]))
    assert page.status_code == 200
    assert page.context["has_change_permission"] is True
    html = page.content.decode()
    assert "An email of the journey “Welcome series”" in html
    assert "Send now" not in html
    assert 'name="interests"' not in html  # the journey's topics, set on the journey
    mailing_services.mailing_update_check(mailing=mailing)  # no refusal


def test_a_journey_emails_page_leads_back_to_its_journey(client, campaign_user, live_welcome):
    """Its breadcrumbs go Home, Journeys, the journey: not to the newsletter list."""
    client.force_login(campaign_user)
    mailing = Mailing.objects.filter(kind="journey").order_by("journey_steps__position").first()
    page = client.get(reverse("admin:mailings_mailing_change", args=[mailing.pk])).content.decode()

    breadcrumbs = re.search(r'<div class="breadcrumbs">(.*?)</div>', page, re.S).group(1)
    assert reverse("admin:journeys_journey_change", args=[live_welcome.pk]) in breadcrumbs
    assert "Step 1:" in breadcrumbs
    assert reverse("admin:mailings_mailing_changelist") not in breadcrumbs
