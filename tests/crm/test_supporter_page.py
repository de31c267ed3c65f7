"""A supporter's page: who they are and how engaged, then their timeline; only superusers delete."""

import datetime

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from crm import services, timeline
from crm.models import Supporter, Suppression
from mailings.models import Delivery, Mailing
from tests.factories import MailingFactory, SupporterFactory

pytestmark = pytest.mark.django_db

START = datetime.datetime(2026, 3, 2, 9, 0, tzinfo=datetime.UTC)


def page_url(supporter):
    return reverse("admin:crm_supporter_change", args=[supporter.pk])


@pytest.fixture
def staff_client(client, membership_user):
    client.force_login(membership_user)
    return client


@pytest.fixture
def early_supporter(interest):
    """Eve, who joined the day before the mailings below began."""
    with time_machine.travel(START - datetime.timedelta(days=1)):
        return SupporterFactory(email="eve@example.org", first_name="Eve", subscribed_to=[interest])


def sent(supporter, name, when, **outcome):
    """A mailing called `name` sent to `supporter` at `when`, with what became of it."""
    mailing = MailingFactory(name=name, status=Mailing.Status.SENT, started_at=when)
    return Delivery.objects.create(
        mailing=mailing,
        supporter=supporter,
        status=Delivery.Status.SENT,
        sent_at=when,
        created_at=when,
        **outcome,
    )


def walk(client, supporter):
    """Follow "Older entries" from the newest page to the last; return every page's entries."""
    pages = []
    url = page_url(supporter)
    while url:
        response = client.get(url)
        assert response.status_code == 200
        pages.append(response.context["timeline"].entries)
        older = response.context["timeline_older_url"]
        url = page_url(supporter) + older.removesuffix("#timeline") if older else None
    return pages


def test_the_head_of_the_page_says_who_they_are_and_how_engaged(staff_client, supporter):
    """Name, email, status, topics; last opened and clicked; opens over the last ten mailings."""
    supporter.last_name = "Okafor"
    supporter.save()
    # Twelve mailings, one a week; of the ten newest, four were opened.
    opened_weeks = {0, 3, 7, 9, 11}  # week 0 is the oldest, outside the last ten
    for week in range(12):
        when = START + datetime.timedelta(weeks=week)
        outcome = {"delivered_at": when + datetime.timedelta(minutes=1)}
        if week in opened_weeks:
            outcome["opened_at"] = outcome["last_opened_at"] = when + datetime.timedelta(hours=2)
        if week == 7:
            outcome["clicked_at"] = outcome["last_clicked_at"] = when + datetime.timedelta(hours=3)
        sent(supporter, f"Briefing {week}", when, **outcome)

    response = staff_client.get(page_url(supporter))

    summary = response.context["supporter_summary"]
    assert summary["name"] == "Alice Okafor"
    assert summary["email"] == "alice@example.org"
    assert summary["status_label"] == "Active"
    assert [sub["name"] for sub in summary["subscriptions"]] == ["Responsibility to Protect"]
    figures = {figure.label: figure.value for figure in summary["figures"]}
    assert figures == {
        "Last opened": "18 May 2026",  # week 11
        "Last clicked": "20 Apr 2026",  # week 7
        "Opened, last 10 mailings": "40%",
    }
    html = response.content.decode()
    assert "Opened 4 of the last 10 mailings sent to them." in html
    assert (
        html.index("Alice Okafor") < html.index('id="timeline"') < html.index('id="supporter_form"')
    )


def test_the_head_of_the_page_says_when_the_address_is_suppressed(staff_client, supporter):
    services.suppression_add(email=supporter.email, reason=Suppression.Reason.STAFF)

    html = staff_client.get(page_url(supporter)).content.decode()

    assert 'class="supporter-status status-suppressed"' in html


def test_a_supporter_never_mailed_says_so(staff_client, supporter):
    figures = staff_client.get(page_url(supporter)).context["supporter_summary"]["figures"]

    assert [(figure.label, figure.value) for figure in figures] == [
        ("Last opened", "never"),
        ("Last clicked", "never"),
        ("Opened, last 10 mailings", "—"),
    ]


def test_the_timeline_is_newest_first_in_pages_of_25_with_nothing_lost_or_repeated(
    staff_client, early_supporter
):
    """Sixty mailings and the joining and consent before them: three pages, newest first."""
    for number in range(60):
        sent(early_supporter, f"Update {number}", START + datetime.timedelta(days=number))

    pages = walk(staff_client, early_supporter)

    entries = [entry for page in pages for entry in page]
    assert [len(page) for page in pages] == [25, 25, 12]
    assert [entry.when for entry in entries] == sorted(
        (entry.when for entry in entries), reverse=True
    )
    names = [entry.text for entry in entries if entry.kind == "Mailing"]
    assert names == [f"Sent: “Update {number}”" for number in range(59, -1, -1)]
    assert [entry.kind for entry in entries[-2:]] == ["Consent", "Joined"]


def test_entries_at_one_moment_are_never_split_between_pages(staff_client, early_supporter):
    """A page ends before a moment shared across its edge; a page's worth at once is kept whole."""
    for number in range(20):
        sent(early_supporter, f"Early {number}", START + datetime.timedelta(hours=number))
    together = START + datetime.timedelta(days=10)
    for number in range(30):  # thirty mailings recorded in the same microsecond
        sent(early_supporter, f"Together {number}", together)
    for number in range(20):
        sent(early_supporter, f"Late {number}", together + datetime.timedelta(hours=1 + number))

    pages = walk(staff_client, early_supporter)

    mailings = [entry.text for page in pages for entry in page if entry.kind == "Mailing"]
    assert len(mailings) == 70
    assert len(set(mailings)) == 70
    # The late twenty and nothing of the shared moment, then the thirty whole.
    assert [entry.text for entry in pages[0]] == [
        f"Sent: “Late {number}”" for number in range(19, -1, -1)
    ]
    assert {entry.when for entry in pages[1]} == {together}
    assert len(pages[1]) == 30
    assert [len(page) for page in pages[2:]] == [22]


def test_each_kind_of_entry_says_what_happened(
    staff_client, membership_user, partner_list, interest, other_interest
):
    """Joining by import, consent and its wording, mailings, staff edits, exports, revoked links."""
    preview = partner_list(
        "Email,First Name,Surname,Postcode\njo@example.org,Jo,Baker,LS1 4AP\n",
        interests=[interest],
        confirm=True,
        actor=membership_user,
    )
    batch = preview.batch
    jo = Supporter.objects.with_email("jo@example.org").get()
    services.consent_grant(
        supporter=jo,
        interest=other_interest,
        method="signup_form",
        wording="I would like Rally to email me about events and actions.",
        wording_version="sha256:0f3a9c1b2d4e",
    )
    now = timezone.now()
    delivery = sent(
        jo,
        "Spring briefing",
        now,
        delivered_at=now,
        opened_at=now,
        last_opened_at=now,
        clicked_at=now,
        last_clicked_at=now,
    )
    services.supporter_unsubscribe(
        supporter=jo, interest=other_interest, method="one_click", mailing=delivery.mailing
    )
    edit = {
        "email": "jo@example.org",
        "first_name": "Jo",
        "last_name": "Baker",
        "postcode": "M1 1AE",
        "country": "GB",
        "source": "partner_import",
        "partner": batch.partner.pk,
        "phone": "",
        "organisation": "",
        "notes": "",
        "subscriptions-TOTAL_FORMS": 0,
        "subscriptions-INITIAL_FORMS": 0,
    }
    assert staff_client.post(page_url(jo), edit).status_code == 302
    staff_client.get(reverse("admin:crm_supporter_export_data", args=[jo.pk]))
    staff_client.post(reverse("admin:crm_supporter_revoke_links", args=[jo.pk]))

    response = staff_client.get(page_url(jo))

    said = [(entry.kind, entry.text, entry.who) for entry in response.context["timeline"].entries]
    assert said == [
        ("Links", "Every email link they were sent was revoked", "maya"),
        ("Data export", "Everything we hold about them was exported", "maya"),
        ("Details", "Changed postcode", "maya"),
        (
            "Consent",
            "Unsubscribed from Events and actions with one-click unsubscribe",
            "",
        ),
        ("Mailing", "Sent: “Spring briefing”", ""),
        ("Consent", "Subscribed to Events and actions on the sign-up form", ""),
        (
            "Consent",
            "Subscribed to Responsibility to Protect by a partner list import, "
            "from Waging Peace's list",
            "maya",
        ),
        ("Joined", "Added from a partner's list (Waging Peace)", ""),
    ]
    entries = response.context["timeline"].entries
    assert entries[2].detail == "postcode: LS1 4AP → M1 1AE"
    assert [word for word, _ in entries[4].marks] == ["delivered", "opened", "clicked"]
    assert entries[4].link == reverse("admin:mailings_mailing_report", args=[delivery.mailing_id])
    assert entries[3].link == reverse("admin:mailings_mailing_change", args=[delivery.mailing_id])
    batch_url = reverse("admin:crm_importbatch_change", args=[batch.pk])
    assert entries[6].link == entries[7].link == batch_url
    html = response.content.decode()
    assert f'href="{batch_url}"' in html
    assert "clicked</span>" in html


def test_consent_shows_the_wording_they_saw_not_its_version(
    staff_client, supporter, other_interest
):
    wording = (
        "I would like Rally to email me about the campaign topics I have chosen. I can "
        "change my choices or unsubscribe at any time from the link in every email."
    )
    services.consent_grant(
        supporter=supporter,
        interest=other_interest,
        method="signup_form",
        wording=wording,
        wording_version="sha256:9b1c0de5a7f2",
    )

    response = staff_client.get(page_url(supporter))

    entry = response.context["timeline"].entries[0]
    assert entry.detail == f"“{wording}”"
    html = response.content.decode()
    assert f"“{wording}”</p>" in html  # shown, and cut short by the stylesheet
    assert f'title="{wording} (wording version sha256:9b1c0de5a7f2)"' in html
    assert ">sha256:" not in html


def test_an_unreadable_link_to_older_entries_shows_the_newest_and_says_so(staff_client, supporter):
    for bad in ("yesterday", "-5", "9" * 40):
        response = staff_client.get(page_url(supporter), {"timeline_before": bad})
        assert response.status_code == 200
        assert "That link to older entries could not be read" in response.content.decode()
        assert [entry.kind for entry in response.context["timeline"].entries] == [
            "Consent",
            "Joined",
        ]


def test_the_page_takes_as_many_queries_for_a_long_history_as_for_a_short_one(
    staff_client, supporter, interest
):
    """Each source reads a page's worth; nothing is fetched row by row."""

    def queries():
        with CaptureQueriesContext(connection) as captured:
            staff_client.get(page_url(supporter))
        return len(captured)

    sent(supporter, "First", START)
    queries()  # the first request fills caches (content types, filters)
    few = queries()
    for number in range(40):
        delivery = sent(supporter, f"More {number}", START + datetime.timedelta(days=number + 1))
        Delivery.objects.filter(pk=delivery.pk).update(opened_at=timezone.now())
        services.supporter_unsubscribe(supporter=supporter, interest=interest, method="staff")
        services.consent_grant(supporter=supporter, interest=interest, method="staff")
        supporter.phone = f"0700 900 {number:03}"
        supporter.save()
        services.supporter_export_data(supporter=supporter)

    assert queries() == few


def test_campaign_managers_see_the_timeline_but_not_the_consent_records_list(
    client, campaign_user, supporter
):
    client.force_login(campaign_user)

    response = client.get(page_url(supporter))

    assert response.status_code == 200
    assert [entry.kind for entry in response.context["timeline"].entries] == ["Consent", "Joined"]
    assert response.context["consent_records_url"] == ""


def test_membership_staff_follow_a_link_to_every_consent_record(staff_client, supporter):
    SupporterFactory(subscribed_to=[supporter.subscriptions.get().interest])
    url = staff_client.get(page_url(supporter)).context["consent_records_url"]

    records = staff_client.get(url).context["cl"].result_list

    assert [record.supporter_id for record in records] == [supporter.pk]


def test_only_superusers_may_delete_and_are_told_it_is_not_erasure(client, staff_client, superuser):
    """A supporter added by mistake, with no consent records, can be deleted by a superuser."""
    mistake = SupporterFactory(email="typo@exmaple.org")
    delete_url = reverse("admin:crm_supporter_delete", args=[mistake.pk])
    assert staff_client.get(delete_url).status_code == 403
    assert 'class="deletelink"' not in staff_client.get(page_url(mistake)).content.decode()

    client.force_login(superuser)
    assert 'class="deletelink"' in client.get(page_url(mistake)).content.decode()
    warning = client.get(delete_url).content.decode()
    assert "Deleting is not erasing." in warning
    assert "leaves no entry on the suppression list" in warning
    assert reverse("admin:crm_supporter_erase", args=[mistake.pk]) in warning

    client.post(delete_url, {"post": "yes"})

    assert not Supporter.objects.filter(pk=mistake.pk).exists()
    assert not Suppression.objects.exists()


def test_a_supporter_with_consent_records_cannot_be_deleted_and_erasure_is_offered(
    client, superuser, supporter
):
    client.force_login(superuser)
    delete_url = reverse("admin:crm_supporter_delete", args=[supporter.pk])

    page = client.get(delete_url).content.decode()
    refused = client.post(delete_url, {"post": "yes"})

    assert "This supporter cannot be deleted:" in page
    assert reverse("admin:crm_supporter_erase", args=[supporter.pk]) in page
    assert refused.status_code == 403
    assert Supporter.objects.filter(pk=supporter.pk).exists()


def test_the_bulk_delete_action_is_only_offered_to_superusers_with_the_same_warning(
    client, staff_client, superuser
):
    mistake = SupporterFactory()
    changelist = reverse("admin:crm_supporter_changelist")
    assert 'value="delete_selected"' not in staff_client.get(changelist).content.decode()

    client.force_login(superuser)
    assert 'value="delete_selected"' in client.get(changelist).content.decode()
    response = client.post(
        changelist, {"action": "delete_selected", "_selected_action": [mistake.pk]}
    )

    assert "Deleting is not erasing." in response.content.decode()
    assert Supporter.objects.filter(pk=mistake.pk).exists()


def test_an_erased_supporters_page_keeps_only_what_erasure_keeps(client, superuser, supporter):
    client.force_login(superuser)
    client.post(reverse("admin:crm_supporter_erase", args=[supporter.pk]))

    response = client.get(page_url(supporter))

    summary = response.context["supporter_summary"]
    assert summary["name"] == f"Erased supporter #{supporter.pk}"
    assert summary["status_label"] == "Erased"
    said = [(entry.kind, entry.text) for entry in response.context["timeline"].entries]
    assert said == [
        ("Erased", "Erased: personal data removed and the address suppressed"),
        ("Joined", "Added by staff"),
    ]
    assert "alice" not in response.content.decode().lower()


def test_a_cursor_names_a_moment_to_the_microsecond():
    moment = datetime.datetime(2026, 12, 4, 14, 2, 3, 456789, tzinfo=datetime.UTC)

    assert timeline.moment(str(timeline.cursor_at(moment))) == moment
    with pytest.raises(ValueError, match="positive"):
        timeline.moment("0")


@pytest.mark.postgres
def test_the_timeline_is_the_same_on_postgresql(staff_client, supporter):
    """Cursor comparisons on timestamps with microseconds hold on PostgreSQL too."""
    with time_machine.travel(START, tick=False):
        for number in range(30):
            sent(supporter, f"Same moment {number}", timezone.now())
    pages = walk(staff_client, supporter)

    assert [len(page) for page in pages] == [2, 30]
