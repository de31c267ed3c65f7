"""A campaign manager builds a journey in Chromium; a supporter who joins gets its emails."""

import os
import re
import time
from pathlib import Path

import pytest

from crm.models import CampaignInterest
from mailings.journeys import engine
from mailings.journeys.models import Journey
from tests import factories

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("tasks_run_now", "fresh_cache"),
]


@pytest.fixture
def r2p(db):
    return factories.CampaignInterestFactory(
        slug="r2p",
        name="Responsibility to Protect",
        description="The UK's duty to help prevent genocide and mass atrocities.",
    )


@pytest.fixture
def sink(settings, _mail_sink_of_the_test_run):
    """Mail goes to the test run's mail sink through Postmark's API, as `make run` sends it."""
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = {**settings.ANYMAIL, "POSTMARK_SERVER_TOKEN": "test-token"}
    return _mail_sink_of_the_test_run


def _shot(page, name):
    """Keep a screenshot when RALLY_SCREENSHOT_DIR names a folder (to look at the pages)."""
    folder = os.environ.get("RALLY_SCREENSHOT_DIR")
    if folder:
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def _log_in(page, base):
    page.goto(f"{base}/admin/login/")
    page.get_by_label("Username").fill("carl")
    page.get_by_label("Password").fill("pw")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/admin/")


def _step(page, row, position, kind, days=None):
    prefix = f"#id_steps-{row}-"
    page.locator(prefix + "position").fill(str(position))
    page.locator(prefix + "kind").select_option(kind)
    if days is not None:
        page.locator(prefix + "wait_days").fill(str(days))


def test_build_a_journey_and_a_new_supporter_gets_both_emails(
    chromium, live_server, settings, campaign_user, r2p, sink
):
    settings.SITE_URL = base = live_server.url
    settings.RALLY_JOURNEY_DAY_SECONDS = 1  # "wait 1 day" lasts a second
    staff = chromium.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    page = staff.new_page()
    errors = []
    page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
    _log_in(page, base)

    page.goto(f"{base}/admin/journeys/journey/add/")
    page.get_by_label("Name:").fill("Welcome series")
    page.locator("#id_interests_from").select_option(label="Responsibility to Protect")
    page.locator("#id_interests_add").click()
    for row, (kind, days) in enumerate([("email", None), ("wait", 1), ("email", None)]):
        page.locator("#steps-group .add-row a").click()
        _step(page, row, row + 1, kind, days)
    _shot(page, "journey-add")
    page.get_by_role("button", name="Save and continue editing").click()
    page.get_by_text("was added successfully").wait_for()
    journey = Journey.objects.get()
    assert [step.kind for step in journey.steps_of()] == ["email", "wait", "email"]
    assert page.get_by_text("Step 1: write the email").is_visible()

    # The emails are written in the composer (its own tests drive it); here, their words.
    for number, step in enumerate(journey.steps_of().filter(kind="email"), start=1):
        step.mailing.subject = ["Welcome to the campaign", "What R2P is"][number - 1]
        step.mailing.body_html = '<p>Dear {{ first_name|default:"friend" }}, thank you.</p>'
        step.mailing.save()
    page.reload()
    page.get_by_role("button", name="Start the journey").click()
    page.get_by_text("is live").first.wait_for()
    _shot(page, "journey-live")
    journey.refresh_from_db()
    assert journey.status == Journey.Status.LIVE

    phone = chromium.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    join = phone.new_page()
    join.goto(f"{base}/join/")
    join.get_by_label("Email address").fill("nia@example.org")
    join.get_by_label("First name").fill("Nia")
    join.get_by_label("Responsibility to Protect").check()
    join.get_by_role("button", name="Sign up").click()
    join.get_by_role("heading", name="Check your email").wait_for()
    confirmation = sink.last(to="nia@example.org")
    link = re.search(rf"{re.escape(base)}/join/confirm/\S+/", confirmation.text).group(0)
    join.goto(link)
    join.get_by_role("button", name="Yes, sign me up").click()
    join.get_by_role("heading", name="Thank you, you're signed up").wait_for()

    def journey_mail():
        received = sink.messages(to="nia@example.org")
        return [m.subject for m in received if m.subject != confirmation.subject]

    engine.journeys_tick()  # beat's tick: Nia enters, and the welcome is queued and sent
    assert journey_mail() == ["Welcome to the campaign"]
    time.sleep(1.2)
    engine.journeys_tick()
    assert journey_mail() == ["Welcome to the campaign", "What R2P is"]

    page.goto(f"{base}/admin/journeys/journey/{journey.pk}/report/")
    page.get_by_role("heading", name="Report: Welcome series").wait_for()
    _shot(page, "journey-report")
    page.goto(f"{base}/admin/journeys/journey/")
    _shot(page, "journey-list")
    first_email = journey.steps_of().filter(kind="email").first().mailing
    page.goto(f"{base}/admin/mailings/mailing/{first_email.pk}/change/")
    _shot(page, "journey-email")
    assert errors == []
    assert CampaignInterest.objects.count() == 1
    staff.close()
    phone.close()
