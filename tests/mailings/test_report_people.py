"""A report's lists of people (opened, clicked a link, bounced…), as segments or CSV files."""

import csv
import datetime
import io

import pytest
from django.urls import reverse
from django.utils import timezone

from crm.models import AuditEvent, Segment, Supporter
from crm.services import supporter_unsubscribe_from_mailing
from mailings.models import Delivery, DeliveryEvent, Mailing
from tests.factories import MailingFactory, SupporterFactory, made_segments

pytestmark = pytest.mark.django_db

STRATEGY = "https://example.org/strategy?utm=news&x=1"
PETITION = "https://example.org/petition"
SENT = timezone.now() - datetime.timedelta(hours=6)


def _clicks(delivery, url, times):
    for n in range(times):
        DeliveryEvent.objects.create(
            delivery=delivery,
            mailing=delivery.mailing,
            esp_name="Postmark",
            dedupe_key=f"{delivery.pk}-{url}-{n}",
            event_type="clicked",
            timestamp=SENT + datetime.timedelta(hours=1, minutes=n),
            url=url,
        )


@pytest.fixture
def sent(interest):
    """A sent newsletter and what each of its readers did with it.

    Alice clicked the strategy link twice and the petition once, Bob clicked the
    petition, Carol (whose name is a spreadsheet formula) only opened it, Dave
    bounced, Erin unsubscribed from it, Frank has not opened it, and Gus was
    erased after opening it.
    """
    mailing = MailingFactory(name="Autumn briefing", interests=[interest])
    cast = {
        "alice": SupporterFactory(email="alice@example.org", first_name="Alice", last_name="Ng"),
        "bob": SupporterFactory(email="bob@example.org", first_name="Bob", postcode="N1 9GU"),
        "carol": SupporterFactory(email="carol@example.org", first_name='=HYPERLINK("x")'),
        "dave": SupporterFactory(email="dave@example.org", first_name="Dave"),
        "erin": SupporterFactory(
            email="erin@example.org", first_name="Erin", subscribed_to=[interest]
        ),
        "frank": SupporterFactory(email="frank@example.org", first_name="Frank"),
        "gus": SupporterFactory(email="gus@example.org", first_name="Gus"),
    }
    opened = SENT + datetime.timedelta(minutes=30)
    deliveries = {
        name: Delivery.objects.create(
            mailing=mailing, supporter=person, status=Delivery.Status.SENT, sent_at=SENT
        )
        for name, person in cast.items()
    }
    Delivery.objects.filter(
        pk__in=[deliveries[n].pk for n in ("alice", "bob", "carol", "gus")]
    ).update(opened_at=opened)
    Delivery.objects.filter(pk__in=[deliveries["alice"].pk, deliveries["bob"].pk]).update(
        clicked_at=opened
    )
    Delivery.objects.filter(pk=deliveries["dave"].pk).update(bounced_at=opened)
    _clicks(deliveries["alice"], STRATEGY, 2)
    _clicks(deliveries["alice"], PETITION, 1)
    _clicks(deliveries["bob"], PETITION, 1)
    supporter_unsubscribe_from_mailing(supporter=cast["erin"], mailing=mailing, method="one_click")
    Supporter.objects.filter(pk=cast["gus"].pk).update(status=Supporter.Status.ERASED)
    Mailing.objects.filter(pk=mailing.pk).update(
        status=Mailing.Status.SENT, started_at=SENT, finished_at=SENT, recipient_count=len(cast)
    )
    mailing.refresh_from_db()
    return mailing


def people_url(mailing):
    return reverse("admin:mailings_mailing_report_people", args=[mailing.pk])


def listed(client, mailing, **query):
    """Return the email addresses a list page shows, in order."""
    page = client.get(people_url(mailing), query)
    assert page.status_code == 200
    rows = page.context["page"].object_list
    return [delivery.supporter.email for delivery in rows]


@pytest.fixture
def membership(client, membership_user):
    client.force_login(membership_user)
    return client


@pytest.fixture
def manager(client, campaign_user):
    client.force_login(campaign_user)
    return client


def test_each_list_names_exactly_the_people_who_did_that(membership, sent):
    """Erased supporters are in none: nothing about them is kept to show."""
    assert sorted(listed(membership, sent, who="opened")) == [
        "alice@example.org",
        "bob@example.org",
        "carol@example.org",
    ]
    assert sorted(listed(membership, sent, who="clicked")) == [
        "alice@example.org",
        "bob@example.org",
    ]
    assert listed(membership, sent, who="bounced") == ["dave@example.org"]
    assert listed(membership, sent, who="unsubscribed") == ["erin@example.org"]
    assert sorted(listed(membership, sent, who="not_opened")) == [
        "erin@example.org",
        "frank@example.org",
    ]


def test_clickers_of_one_link_are_listed_with_how_often_they_clicked_it(membership, sent):
    page = membership.get(people_url(sent), {"who": "clicked", "link": STRATEGY})

    rows = page.context["page"].object_list
    assert [(d.supporter.email, d.link_clicks) for d in rows] == [("alice@example.org", 2)]
    assert page.context["title"] == f"People who clicked {STRATEGY} in “Autumn briefing”"
    petition = listed(membership, sent, who="clicked", link=PETITION)
    assert sorted(petition) == ["alice@example.org", "bob@example.org"]


def test_the_report_links_every_clicked_link_to_its_list_of_people(membership, sent):
    html = membership.get(reverse("admin:mailings_mailing_report", args=[sent.pk])).content.decode()

    assert "?who=clicked&amp;link=https%3A%2F%2Fexample.org%2Fstrategy%3Futm%3Dnews%26x%3D1" in html
    assert "?who=clicked&amp;link=https%3A%2F%2Fexample.org%2Fpetition" in html


def test_search_narrows_a_list_by_email_name_or_postcode(membership, sent):
    assert listed(membership, sent, who="opened", q="ALICE") == ["alice@example.org"]
    assert listed(membership, sent, who="opened", q="n1 9gu") == ["bob@example.org"]
    assert listed(membership, sent, who="opened", q="nobody-here") == []


def test_long_lists_come_in_pages(membership, sent):
    more = [SupporterFactory() for _ in range(55)]
    Delivery.objects.bulk_create(
        Delivery(mailing=sent, supporter=person, status=Delivery.Status.SENT, bounced_at=SENT)
        for person in more
    )

    first = membership.get(people_url(sent), {"who": "bounced"})
    second = membership.get(people_url(sent), {"who": "bounced", "p": 2})

    assert first.context["page"].paginator.count == 56
    assert len(first.context["page"].object_list) == 50
    assert len(second.context["page"].object_list) == 6
    assert "who=bounced&amp;link=&amp;q=&amp;p=2" in first.content.decode()


def test_an_unknown_list_is_a_clear_error_not_a_crash(membership, sent):
    response = membership.get(people_url(sent), {"who": "everyone"}, follow=True)

    assert response.redirect_chain[-1][0] == reverse(
        "admin:mailings_mailing_report", args=[sent.pk]
    )
    assert "There is no list called “everyone”" in response.content.decode()


def test_clickers_of_a_link_become_a_static_segment_of_exactly_them(
    membership, membership_user, sent
):
    response = membership.post(
        reverse("admin:mailings_mailing_report_segment", args=[sent.pk]),
        {"who": "clicked", "link": PETITION, "q": ""},
    )

    segment = made_segments().get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:crm_segment_change", args=[segment.pk])
    assert segment.name == f"People who clicked {PETITION} in “Autumn briefing”"
    assert segment.kind == Segment.Kind.STATIC
    assert segment.size == 2
    assert sorted(segment.supporters().values_list("email", flat=True)) == [
        "alice@example.org",
        "bob@example.org",
    ]
    added = AuditEvent.objects.get(kind=AuditEvent.Kind.SEGMENT_ADDED)
    assert added.actor == membership_user
    assert added.detail["count"] == 2


def test_making_the_same_segment_twice_gives_a_second_name(membership, sent):
    url = reverse("admin:mailings_mailing_report_segment", args=[sent.pk])
    membership.post(url, {"who": "opened", "q": "alice"})
    membership.post(url, {"who": "opened", "q": "alice"})

    names = sorted(made_segments().values_list("name", flat=True))
    assert names == [
        "People who opened “Autumn briefing”, matching “alice”",
        "People who opened “Autumn briefing”, matching “alice” (2)",
    ]
    assert [s.size for s in made_segments()] == [1, 1]


def test_an_empty_list_makes_no_segment(membership, sent):
    response = membership.post(
        reverse("admin:mailings_mailing_report_segment", args=[sent.pk]),
        {"who": "complained"},
        follow=True,
    )

    assert made_segments().count() == 0
    assert "Nobody is in this list, so no segment was made." in response.content.decode()


def test_csv_of_a_list_neutralises_formulas_and_is_audited_without_names(
    membership, membership_user, sent
):
    response = membership.post(
        reverse("admin:mailings_mailing_report_export", args=[sent.pk]), {"who": "opened"}
    )

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="mailing-')
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[0] == ["Email", "First name", "Last name", "Postcode", "Status", "First opened"]
    carol = next(row for row in rows if row[0] == "carol@example.org")
    assert carol[1] == '\'=HYPERLINK("x")'
    assert len(rows) == 4
    event = AuditEvent.objects.get(kind=AuditEvent.Kind.EXPORTED)
    assert event.actor == membership_user
    assert event.detail["rows"] == 3
    assert event.detail["mailing"] == sent.pk
    assert "carol" not in str(event.detail)


def test_csv_of_one_links_clickers_counts_their_clicks(membership, sent):
    response = membership.post(
        reverse("admin:mailings_mailing_report_export", args=[sent.pk]),
        {"who": "clicked", "link": STRATEGY},
    )

    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[0][-1] == "Clicks on this link"
    assert [(row[0], row[-1]) for row in rows[1:]] == [("alice@example.org", "2")]


def test_campaign_managers_see_the_lists_but_make_no_segment_or_file(manager, sent):
    page = manager.get(people_url(sent), {"who": "clicked"})
    html = page.content.decode()

    assert page.status_code == 200
    assert "alice@example.org" in html
    assert "Make a segment" not in html
    assert "Download as CSV" not in html
    segment = manager.post(
        reverse("admin:mailings_mailing_report_segment", args=[sent.pk]), {"who": "clicked"}
    )
    export = manager.post(
        reverse("admin:mailings_mailing_report_export", args=[sent.pk]), {"who": "clicked"}
    )
    assert segment.status_code == 403
    assert export.status_code == 403
    assert made_segments().count() == 0
    assert AuditEvent.objects.filter(kind=AuditEvent.Kind.EXPORTED).count() == 0


def test_membership_staff_see_both_buttons(membership, sent):
    html = membership.get(people_url(sent), {"who": "clicked"}).content.decode()

    assert "Make a segment of these people" in html
    assert "Download as CSV" in html


def test_staff_without_a_role_see_no_list(client, django_user_model, sent):
    nobody = django_user_model.objects.create_user("nobody", password="pw", is_staff=True)
    client.force_login(nobody)

    assert client.get(people_url(sent), {"who": "opened"}).status_code == 403
