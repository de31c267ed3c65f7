"""The mailing list shows each sent mailing's rates from its kept figures, and subjects as read."""

import datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from mailings import reports
from mailings.models import Delivery, DeliveryEvent, Mailing
from mailings.sending import mailing_finish_if_done
from tests.factories import MailingFactory, SupporterFactory

pytestmark = pytest.mark.django_db

NOW = timezone.now()


def _sent(name, *, finished=NOW, interests=(), opened=0, clicked=0, sent=4, **stats):
    """A sent mailing of `sent` deliveries, `opened` of them opened and `clicked` clicked."""
    mailing = MailingFactory(name=name, interests=list(interests))
    for n in range(sent):
        Delivery.objects.create(
            mailing=mailing,
            supporter=SupporterFactory(),
            status=Delivery.Status.SENT,
            sent_at=finished,
            opened_at=finished if n < opened else None,
            clicked_at=finished if n < clicked else None,
        )
    Mailing.objects.filter(pk=mailing.pk).update(
        status=Mailing.Status.SENT,
        started_at=finished - datetime.timedelta(minutes=5),
        finished_at=finished,
        recipient_count=sent,
        **stats,
    )
    mailing.refresh_from_db()
    return mailing


@pytest.fixture
def manager(client, campaign_user):
    client.force_login(campaign_user)
    return client


def test_the_list_shows_rates_from_the_kept_figures_without_counting_deliveries(manager):
    _sent(
        "Kept figures",
        stats={
            "sent": 1000,
            "opened": 421,
            "opened_percent": 42.1,
            "clicked": 87,
            "clicked_percent": 8.7,
            "unsubscribed": 3,
            "unsubscribed_percent": 0.3,
        },
        stats_counted_at=NOW,
    )
    MailingFactory(name="A draft")

    with CaptureQueriesContext(connection) as queries:
        page = manager.get(reverse("admin:mailings_mailing_changelist"))

    html = page.content.decode()
    assert page.status_code == 200
    assert '<span title="421 of 1,000 sent">42.1%</span>' in html
    assert '<span title="87 of 1,000 sent">8.7%</span>' in html
    assert '<span title="3 of 1,000 sent">0.3%</span>' in html
    assert "View report" in html
    assert not [q for q in queries.captured_queries if "mailings_delivery" in q["sql"]]


def test_the_list_sorts_by_open_rate(manager):
    _sent("Low", stats={"sent": 10, "opened": 1, "opened_percent": 10.0})
    _sent("High", stats={"sent": 10, "opened": 9, "opened_percent": 90.0})

    page = manager.get(reverse("admin:mailings_mailing_changelist"), {"o": "-5"})

    names = [mailing.name for mailing in page.context["cl"].result_list]
    assert names == ["High", "Low"]


def test_subjects_show_as_a_reader_sees_them(manager):
    MailingFactory(name="Hello", subject="Dear {{ first_name|default:'friend' }}, act now")
    MailingFactory(name="Plain", subject="News for {{ first_name }} in {{ postcode }}")

    html = manager.get(reverse("admin:mailings_mailing_changelist")).content.decode()

    assert "Dear friend, act now" in html
    assert "News for [first name] in [postcode]" in html
    assert "{{" not in html


def test_finishing_a_mailing_counts_its_figures(interest):
    mailing = _sent("Just sent", opened=2, clicked=1)
    Mailing.objects.filter(pk=mailing.pk).update(status=Mailing.Status.SENDING, finished_at=None)

    assert mailing_finish_if_done(mailing_id=mailing.pk) is True

    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.SENT
    assert mailing.stats["sent"] == 4
    assert mailing.stats["opened_percent"] == 50.0
    assert mailing.stats["clicked_percent"] == 25.0
    assert mailing.stats_counted_at is not None


def test_beat_counts_again_only_recent_mailings_whose_figures_are_stale():
    stale = _sent("Stale", opened=1, stats={}, stats_counted_at=NOW - datetime.timedelta(hours=1))
    fresh = _sent("Fresh", opened=1, stats={"sent": 99}, stats_counted_at=NOW)
    old = _sent("Old", opened=1, finished=NOW - datetime.timedelta(days=45), stats={})

    assert reports.stats_refresh_recent(now=NOW) == 1

    for mailing in (stale, fresh, old):
        mailing.refresh_from_db()
    assert stale.stats["opened"] == 1
    assert fresh.stats == {"sent": 99}
    assert old.stats == {}


def test_the_report_compares_with_the_five_mailings_sent_before_to_the_same_interests(
    client, superuser, interest, other_interest
):
    earlier = [
        _sent(
            f"Earlier {n}",
            interests=[interest],
            opened=n % 5,
            finished=NOW - datetime.timedelta(days=10 - n),
        )
        for n in range(7)
    ]
    _sent("Other topic", interests=[other_interest], finished=NOW - datetime.timedelta(days=1))
    _sent("Later", interests=[interest], finished=NOW + datetime.timedelta(days=1))
    this = _sent("This one", interests=[interest], opened=2)
    client.force_login(superuser)

    page = client.get(reverse("admin:mailings_mailing_report", args=[this.pk]))

    comparison = page.context["report"]["comparison"]
    assert [row["mailing"].name for row in comparison["rows"]] == [
        "This one",
        "Earlier 6",
        "Earlier 5",
        "Earlier 4",
        "Earlier 3",
        "Earlier 2",
    ]
    assert comparison["rows"][0]["opened_percent"] == 50.0
    assert comparison["rows"][1]["opened_percent"] == 25.0  # Earlier 6: 1 of 4
    # Earlier 6..2 opened 1, 0, 4, 3, 2 of 4: 25, 0, 100, 75, 50 -> 50 on average.
    assert comparison["average"]["opened_percent"] == 50.0
    assert earlier[0].pk not in [row["mailing"].pk for row in comparison["rows"]]
    assert "Average of the earlier 5" in page.content.decode()


def test_the_report_chart_has_hours_and_the_clicks_table_every_link(client, superuser, interest):
    mailing = _sent("Charted", interests=[interest], opened=3, clicked=2, sent=3)
    start = mailing.started_at
    deliveries = list(Delivery.objects.filter(mailing=mailing).order_by("pk"))
    for n, delivery in enumerate(deliveries):
        Delivery.objects.filter(pk=delivery.pk).update(
            opened_at=start + datetime.timedelta(hours=n), clicked_at=None
        )
    for n in range(12):
        DeliveryEvent.objects.create(
            delivery=deliveries[n % 3],
            mailing=mailing,
            esp_name="Postmark",
            dedupe_key=f"k{n}",
            event_type="clicked",
            timestamp=start,
            url=f"https://example.org/page-{n}",
        )
    client.force_login(superuser)

    report = client.get(reverse("admin:mailings_mailing_report", args=[mailing.pk])).context[
        "report"
    ]

    assert len(report["links"]) == 12
    chart = report["chart"]
    assert chart.series[0].values == [1, 1, 1]
    assert chart.x_name == "Hour"
    assert all(":00" in label for label in chart.labels)
