"""The admin home: figures counted by the periodic task, read from the cache, shown by role."""

import datetime
import re

import pytest
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from crm.imports import progress_key
from crm.models import ImportBatch, Supporter
from crm.services import supporter_erase, supporter_unsubscribe
from mailings.models import Mailing
from project import dashboard, tasks
from tests.factories import DeliveryFactory, MailingFactory, SupporterFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _own_cache(fresh_cache):
    """Each test starts with no figures stored."""


def _page(client, user):
    client.force_login(user)
    response = client.get("/admin/")
    assert response.status_code == 200
    return response.content.decode()


def _text(html):
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _staff_with(django_user_model, *codenames):
    user = django_user_model.objects.create_user(username="pat", password="pw", is_staff=True)
    for codename in codenames:
        app_label, name = codename.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=name)
        )
    return user


def _sent(mailing, *, finished_ago=datetime.timedelta(days=1), stats=None):
    finished = timezone.now() - finished_ago
    Mailing.objects.filter(pk=mailing.pk).update(
        status=Mailing.Status.SENT,
        started_at=finished - datetime.timedelta(minutes=5),
        finished_at=finished,
        recipient_count=1,
        stats=stats or {},
        stats_counted_at=timezone.now() if stats else None,
    )
    mailing.refresh_from_db()
    return mailing


# -- the figures ---------------------------------------------------------------------------------


def test_three_joined_this_week_and_one_left(interest, partner):
    """Joined counts new supporters by week, source and partner; left counts leaving all email."""
    old = SupporterFactory(created_at=timezone.now() - datetime.timedelta(weeks=40))
    new = [
        SupporterFactory(subscribed_to=[interest]),
        SupporterFactory(source=Supporter.Source.SIGNUP_FORM),
        SupporterFactory(source=Supporter.Source.PARTNER_IMPORT, partner=partner),
    ]
    supporter_unsubscribe(supporter=new[0], method="email_link")
    supporter_unsubscribe(supporter=old, method="one_click")

    figures = dashboard.figures_count()

    assert len(figures["weeks"]) == 26
    assert figures["joined"][-1] == 3
    assert sum(figures["joined"]) == 3  # the supporter from 40 weeks ago is outside the chart
    assert figures["left"][-1] == 2
    assert figures["by_source"]["partner_import"][-1] == 1
    assert figures["by_source"]["signup_form"][-1] == 1
    assert figures["by_source"]["staff"][-1] == 1
    assert figures["by_partner"] == {partner.pk: [0] * 25 + [1]}
    assert figures["partner_names"] == {partner.pk: "Waging Peace"}
    assert figures["consent_methods"] == {"staff": [0] * 25 + [1]}
    assert figures["supporters"] == {"active": 2, "on_record": 4}


def test_an_erased_supporter_counts_as_left_once(interest):
    """Erasure deletes consent records, so it is counted on its own, not lost nor doubled."""
    leaver = SupporterFactory(subscribed_to=[interest])
    supporter_unsubscribe(supporter=leaver, method="email_link")
    supporter_erase(supporter=leaver)

    figures = dashboard.figures_count()

    assert figures["left"][-1] == 1
    assert figures["supporters"] == {"active": 0, "on_record": 0}


def test_weeks_start_on_monday_in_local_time():
    now = datetime.datetime(2026, 3, 30, 0, 30, tzinfo=datetime.UTC)  # 01:30 BST, a Monday

    weeks = dashboard.week_starts(now)

    assert weeks[-1] == datetime.datetime(2026, 3, 30, tzinfo=timezone.get_current_timezone())
    assert weeks[0].date() == datetime.date(2025, 10, 6)
    assert {week.weekday() for week in weeks} == {0}


def test_deliverability_counts_messages_sent_in_the_last_30_days(supporter):
    now = timezone.now()
    mailing = MailingFactory()
    recent = now - datetime.timedelta(days=2)
    for bounced, complained in ((True, False), (False, True), (False, False), (False, False)):
        DeliveryFactory(
            mailing=mailing,
            status="sent",
            sent_at=recent,
            bounced_at=recent if bounced else None,
            complained_at=recent if complained else None,
        )
    DeliveryFactory(mailing=mailing, status="queued")
    older = MailingFactory()
    long_ago = now - datetime.timedelta(days=40)
    Mailing.objects.filter(pk=older.pk).update(status="sent", finished_at=long_ago)
    DeliveryFactory(mailing=older, status="sent", sent_at=long_ago, bounced_at=long_ago)

    assert dashboard.deliverability_count(now) == {
        "sent": 4,
        "bounced": 1,
        "complained": 1,
        "days": 30,
    }


@pytest.mark.parametrize(
    ("complained", "level"),
    [(0, "good"), (9, "good"), (10, "watch"), (29, "watch"), (30, "act"), (200, "act")],
)
def test_complaint_rate_colour_at_gmail_thresholds(complained, level):
    """Out of 10,000: under 0.1% good, from 0.1% watch, from 0.3% act now."""
    [complaints, _bounces] = dashboard.health(
        {"sent": 10_000, "bounced": 0, "complained": complained}
    )

    assert complaints["name"] == "Complaints"
    assert complaints["level"] == level


@pytest.mark.parametrize(
    ("bounced", "level"),
    [(0, "good"), (199, "good"), (200, "watch"), (499, "watch"), (500, "act")],
)
def test_bounce_rate_colour_at_2_and_5_percent(bounced, level):
    [_complaints, bounces] = dashboard.health({"sent": 10_000, "bounced": bounced, "complained": 0})

    assert bounces["level"] == level


def test_health_says_the_rate_and_what_to_do():
    [complaints, bounces] = dashboard.health({"sent": 10_000, "bounced": 30, "complained": 25})

    assert complaints["advice"].startswith(
        "Complaints are at 0.25%: Gmail starts rejecting at 0.3%. Stop sending to people who "
        "have not opened in six months"
    )
    assert bounces["advice"] == "Bounces are at 0.30%, under 2%: the list is in good shape."
    assert dashboard.health({"sent": 0, "bounced": 0, "complained": 0}) == []


def test_a_small_send_is_flagged_as_noisy():
    [complaints, _] = dashboard.health({"sent": 200, "bounced": 0, "complained": 1})

    assert complaints["level"] == "act"
    assert "Only 200 messages were sent" in complaints["advice"]


# -- the page and the cache -----------------------------------------------------------------------


def test_page_counts_once_when_nothing_is_stored_and_says_so(client, superuser, interest):
    SupporterFactory.create_batch(3)

    html = _page(client, superuser)

    assert "Figures counted just now, as none were stored yet." in html
    assert cache.get(dashboard.CACHE_KEY)["joined"][-1] == 3


def test_page_reads_stored_figures_and_shows_their_age(client, superuser):
    SupporterFactory.create_batch(3)
    dashboard.figures_refresh(now=timezone.now() - datetime.timedelta(minutes=4))
    SupporterFactory.create_batch(5)  # joined after the count: not on the page until the next

    text = _text(_page(client, superuser))

    assert "Figures from 4 minutes ago." in text
    assert "Supporters now 3 active, of 3 on record" in text
    assert "Joined 3 in the last 26 weeks" in text


def test_old_figures_say_the_worker_may_have_stopped(client, superuser, settings):
    settings.RALLY_DASHBOARD_SECONDS = 300
    dashboard.figures_refresh(now=timezone.now() - datetime.timedelta(minutes=20))

    text = _text(_page(client, superuser))

    assert "Figures from 20 minutes ago." in text
    assert "the worker that counts them may have stopped" in text


def test_growth_chart_shows_joined_left_and_net_with_a_table(client, superuser, interest):
    leaver, *_ = SupporterFactory.create_batch(3, subscribed_to=[interest])
    supporter_unsubscribe(supporter=leaver, method="email_link")

    html = _page(client, superuser)

    assert "Supporters joined and left per week, last 26 weeks" in html
    start = html.index("<caption>Supporters joined and left")
    table = html[start : html.index("</table>", start)]
    assert '<th scope="col">Week starting</th>' in table
    last_row = re.findall(r"<tr><th scope=\"row\">[^<]+</th>(.*?)</tr>", table)[-1]
    assert re.findall(r"<td>(-?\d+)</td>", last_row) == ["3", "-1", "2"]
    assert "Added by staff (3)" in html  # joined, by source, named with its total
    assert _text(html).count("Net growth +2") == 1


def test_the_periodic_task_counts_stale_mailing_figures_and_the_dashboard(supporter):
    mailing = _sent(MailingFactory(name="Spring appeal"))
    DeliveryFactory(mailing=mailing, supporter=supporter, status="sent", sent_at=timezone.now())

    tasks.dashboard_refresh()

    mailing.refresh_from_db()
    assert mailing.stats["sent"] == 1
    assert cache.get(dashboard.CACHE_KEY)["deliverability"]["sent"] == 1


def test_last_mailings_show_their_rates_and_link_to_their_reports(client, campaign_user):
    stats = {
        "sent": 2000,
        "opened_percent": 41.5,
        "clicked_percent": 6.2,
        "unsubscribed_percent": 0.4,
        "bounced_percent": 1.1,
        "complained_percent": 0.05,
        "opened": 830,
        "clicked": 124,
    }
    counted = _sent(MailingFactory(name="Autumn briefing"), stats=stats)
    _sent(MailingFactory(name="Not counted"), finished_ago=datetime.timedelta(days=2))
    MailingFactory(name="Still a draft")

    html = _page(client, campaign_user)

    report = reverse("admin:mailings_mailing_report", args=[counted.pk])
    assert f'<a href="{report}" title="Open the report">Autumn briefing</a>' in html
    row = _text(html[html.index(report) : html.index("</tr>", html.index(report))])
    assert "2,000 41.5% 6.2% 0.4% 1.1% 0.05%" in row
    assert "Figures not counted yet" in html  # a page view never counts a mailing's deliveries
    assert "Still a draft" not in html


def test_mailings_sending_and_scheduled_link_to_their_progress(client, campaign_user):
    sending = MailingFactory(name="Emergency appeal")
    Mailing.objects.filter(pk=sending.pk).update(status="sending", recipient_count=5000)
    later = MailingFactory(name="December newsletter")
    Mailing.objects.filter(pk=later.pk).update(
        status="scheduled",
        scheduled_at=datetime.datetime(2030, 12, 7, 9, 0, tzinfo=timezone.get_current_timezone()),
    )

    html = _page(client, campaign_user)

    progress = reverse("admin:mailings_mailing_progress", args=[sending.pk])
    assert f'data-progress-url="{progress}"' in html
    assert "5,000 recipients." in html
    assert "Starts Saturday 7 December, 09:00" in html
    assert html.count("data-progress-url") == 1  # nothing to poll for a scheduled mailing


def test_running_import_shows_its_progress_to_membership_staff_only(
    client, membership_user, campaign_user, partner
):
    batch = ImportBatch.objects.create(
        partner=partner, file_name="waging-peace.csv", file_hash="0" * 64, row_count=400
    )
    ImportBatch.objects.filter(pk=batch.pk).update(status=ImportBatch.Status.RUNNING)
    cache.set(progress_key(batch.pk), {"stage": "writing", "done": 100, "total": 400})

    assert "100 of 400 rows (writing)" in _text(_page(client, membership_user))
    assert "waging-peace.csv" not in _page(client, campaign_user)


# -- who sees what ------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["membership_user", "campaign_user"])
def test_both_roles_see_supporters_and_mailings(client, role, request):
    html = _page(client, request.getfixturevalue(role))

    assert "Supporters now" in html
    assert "Supporters joined and left per week" in html
    assert "Deliverability, last 30 days" in html
    assert "Last mailings sent" in html


def test_staff_who_cannot_view_supporters_see_no_supporter_figures(client, django_user_model):
    user = _staff_with(django_user_model, "mailings.view_mailing")
    SupporterFactory.create_batch(2)

    html = _page(client, user)

    assert "Deliverability, last 30 days" in html
    assert "Supporters now" not in html
    assert "rally-chart" not in html
    assert "How new subscriptions were agreed" not in html


def test_staff_who_cannot_view_mailings_see_no_mailing_figures(client, django_user_model):
    user = _staff_with(django_user_model, "crm.view_supporter")
    _sent(MailingFactory(name="Autumn briefing"), stats={"sent": 10})

    html = _page(client, user)

    assert "Supporters now" in html
    assert "Deliverability" not in html
    assert "Autumn briefing" not in html
    assert "Sending and scheduled" not in html


def test_staff_with_neither_permission_see_no_figures_and_count_nothing(client, django_user_model):
    html = _page(client, _staff_with(django_user_model))

    assert "Supporters now" not in html
    assert "Deliverability" not in html
    assert cache.get(dashboard.CACHE_KEY) is None


def test_untracked_opens_show_a_dash_not_zero(client, campaign_user, settings):
    settings.RALLY_TRACK_OPENS = False
    settings.RALLY_TRACK_CLICKS = True
    stats = {"sent": 100, "opened": 0, "opened_percent": 0.0, "clicked": 0, "clicked_percent": 0.0}
    _sent(MailingFactory(name="Quiet week"), stats=stats)

    text = _text(_page(client, campaign_user))

    assert "Quiet week" in text
    dash = "\N{EN DASH}"
    assert f" 100 {dash} 0.0% " in text
    assert (
        f"\N{LEFT DOUBLE QUOTATION MARK}{dash}\N{RIGHT DOUBLE QUOTATION MARK}: opens or clicks"
        in text
    )
