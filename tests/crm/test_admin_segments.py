"""Segments in the staff admin: the list, a rule-based segment's page, a static list's page."""

import datetime
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from crm.models import CampaignInterest, Segment, SegmentMembership, Tag
from crm.services import segment_add_members
from mailings.models import Mailing
from tests.factories import MailingFactory, SegmentFactory, SupporterFactory, made_segments

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client, membership_user):
    client.force_login(membership_user)
    return client


@pytest.fixture
def lobby_day(membership_user):
    """A static list with two members: two Sam Taylors, told apart by email and postcode."""
    segment = SegmentFactory(name="Lobby day", kind=Segment.Kind.STATIC)
    leeds = SupporterFactory(email="sam.leeds@example.org", postcode="LS1 4AP")
    hull = SupporterFactory(email="sam.hull@example.org", postcode="HU1 2AA")
    segment_add_members(
        segment=segment,
        supporters=leeds.__class__.objects.filter(pk__in=[leeds.pk, hull.pk]),
        actor=membership_user,
    )
    return segment


def form_data(**overrides):
    return {"name": "Northern supporters", "description": "", "kind": "rules", **overrides}


def change_page(client, segment):
    return client.get(reverse("admin:crm_segment_change", args=[segment.pk])).content.decode()


def test_segment_page_shows_live_count_and_first_members(staff_client, supporter, interest):
    SupporterFactory(email="nobody@example.org")
    segment = SegmentFactory(rules={"interests": [interest.slug]})
    content = change_page(staff_client, segment)
    assert "1 supporters" in content
    assert "Alice" in content
    assert "nobody@example.org" not in content


def test_rules_are_saved_from_ordinary_fields(staff_client, interest):
    Tag.objects.create(name="volunteer")
    response = staff_client.post(
        reverse("admin:crm_segment_add"),
        form_data(
            interests=[interest.slug],
            countries=["GB", "IE"],
            postcode_prefixes="LS, M1",
            tags=["volunteer"],
            joined_after="01/02/2024",
            joined_before="31/12/2024",
        ),
    )
    assert response.status_code == 302
    segment = made_segments().get()
    assert segment.rules == {
        "interests": ["r2p"],
        "countries": ["GB", "IE"],
        "postcode_prefixes": ["LS", "M1"],
        "tags": ["volunteer"],
        "joined_after": "2024-02-01",
        "joined_before": "2024-12-31",
    }


def test_dates_in_the_wrong_order_get_a_clear_message_and_save_nothing(staff_client):
    response = staff_client.post(
        reverse("admin:crm_segment_add"),
        form_data(joined_after="31/12/2024", joined_before="01/01/2024"),
    )
    assert response.status_code == 200
    assert "must not be later than" in response.content.decode()
    assert made_segments().count() == 0


def test_a_date_that_is_not_a_day_says_how_to_write_it(staff_client):
    """13 is no month: the message shows the UK way of writing a date."""
    response = staff_client.post(
        reverse("admin:crm_segment_add"), form_data(joined_after="31/13/2024")
    )
    assert response.status_code == 200
    assert "Enter a date as dd/mm/yyyy, e.g. 31/01/2025." in response.content.decode()
    assert made_segments().count() == 0


def test_an_unknown_country_is_refused_and_saves_nothing(staff_client):
    response = staff_client.post(
        reverse("admin:crm_segment_add"), form_data(countries=["GB", "XX"])
    )
    assert response.status_code == 200
    assert "XX is not one of the available choices" in response.content.decode()
    assert made_segments().count() == 0


def test_saved_dates_are_shown_the_uk_way(staff_client):
    segment = SegmentFactory(rules={"joined_after": "2024-02-01"})
    content = change_page(staff_client, segment)
    assert 'name="joined_after" value="01/02/2024"' in content


def test_countries_and_tags_are_chosen_from_lists(staff_client):
    Tag.objects.create(name="volunteer")
    Tag.objects.create(name="donor")
    content = staff_client.get(reverse("admin:crm_segment_add")).content.decode()
    countries = re.search(r'<select name="countries".*?</select>', content, re.S).group(0)
    assert "multiple" in countries
    assert '<option value="GB">United Kingdom</option>' in countries
    tags = re.search(r'<select name="tags".*?</select>', content, re.S).group(0)
    assert re.findall(r'<option value="([^"]+)"', tags) == ["donor", "volunteer"]


def test_a_deleted_tag_in_the_rules_stays_chosen_and_is_kept_on_save(staff_client):
    segment = SegmentFactory(name="Old tag", rules={"tags": ["marcher"]})
    content = change_page(staff_client, segment)
    assert '<option value="marcher" selected>marcher (no longer a tag)</option>' in content
    staff_client.post(
        reverse("admin:crm_segment_change", args=[segment.pk]),
        {"name": "Old tag", "description": "Renamed", "tags": ["marcher"]},
    )
    segment.refresh_from_db()
    assert (segment.description, segment.rules) == ("Renamed", {"tags": ["marcher"]})


def test_static_segment_has_no_rules(staff_client, interest):
    staff_client.post(
        reverse("admin:crm_segment_add"), form_data(kind="static", interests=[interest.slug])
    )
    assert made_segments().get().rules == {}


def test_the_kind_is_chosen_when_a_segment_is_made_and_kept(staff_client, lobby_day, interest):
    """Posting another kind, or rules, to a static list's page changes neither."""
    staff_client.post(
        reverse("admin:crm_segment_change", args=[lobby_day.pk]),
        {"name": "Lobby day", "description": "", "kind": "rules", "interests": [interest.slug]},
    )
    lobby_day.refresh_from_db()
    assert (lobby_day.kind, lobby_day.rules) == (Segment.Kind.STATIC, {})
    assert lobby_day.supporters().count() == 2


def test_static_segment_page_shows_members_with_add_and_remove_not_rules(staff_client, lobby_day):
    content = change_page(staff_client, lobby_day)
    assert 'class="module aligned segment-rules"' not in content
    assert 'name="interests"' not in content
    assert 'name="countries"' not in content
    assert "Add supporters…" in content
    assert f'href="{reverse("admin:crm_supporter_changelist")}"' in content
    assert "“Add to a static segment…”" in content
    assert content.count('name="remove_members"') == 2
    assert 'value="Remove ticked supporters"' in content


def test_rule_based_segment_page_shows_its_rules_and_no_remove_boxes(staff_client, supporter):
    segment = SegmentFactory(rules={"countries": ["GB"]})
    content = change_page(staff_client, segment)
    assert 'class="module aligned segment-rules"' in content
    assert 'name="remove_members"' not in content
    assert "Add supporters…" not in content


def test_ticking_members_and_saving_removes_them(staff_client, lobby_day):
    leeds = lobby_day.members.get(email="sam.leeds@example.org")
    response = staff_client.post(
        reverse("admin:crm_segment_change", args=[lobby_day.pk]),
        {"name": "Lobby day", "description": "", "remove_members": [leeds.pk], "_continue": "1"},
        follow=True,
    )
    assert "Removed 1 supporter(s) from “Lobby day”." in response.content.decode()
    assert list(lobby_day.members.values_list("email", flat=True)) == ["sam.hull@example.org"]
    lobby_day.refresh_from_db()
    assert lobby_day.size == 1


def test_a_forged_removal_changes_nothing(staff_client, lobby_day):
    response = staff_client.post(
        reverse("admin:crm_segment_change", args=[lobby_day.pk]),
        {"name": "Lobby day", "description": "", "remove_members": ["not-a-number"]},
    )
    assert response.status_code == 200
    assert SegmentMembership.objects.filter(segment=lobby_day).count() == 2


def test_campaign_managers_read_the_rules_as_sentences_and_cannot_remove(
    client, campaign_user, lobby_day, interest
):
    segment = SegmentFactory(
        rules={
            "countries": ["GB", "IE"],
            "interests": [interest.slug],
            "joined_after": "2024-02-01",
        }
    )
    client.force_login(campaign_user)
    content = change_page(client, segment)
    assert "Lives in any of: United Kingdom, Ireland" in content
    assert "Subscribed to any of: Responsibility to Protect" in content
    assert "Joined on or after 01/02/2024" in content
    static = change_page(client, lobby_day)
    assert "sam.leeds@example.org" in static
    assert 'name="remove_members"' not in static
    assert "Add supporters…" not in static
    before = SegmentMembership.objects.count()
    leeds = lobby_day.members.get(email="sam.leeds@example.org")
    response = client.post(
        reverse("admin:crm_segment_change", args=[lobby_day.pk]),
        {"name": "Lobby day", "remove_members": [leeds.pk]},
    )
    assert response.status_code == 403
    assert SegmentMembership.objects.count() == before


def test_member_preview_tells_namesakes_apart_and_links_to_all(staff_client, lobby_day):
    content = change_page(staff_client, lobby_day)
    for email, postcode in (
        ("sam.leeds@example.org", "LS1 4AP"),
        ("sam.hull@example.org", "HU1 2AA"),
    ):
        supporter = lobby_day.members.get(email=email)
        row = re.search(rf"<tr>(?:(?!</tr>).)*{re.escape(email)}.*?</tr>", content, re.S).group(0)
        assert reverse("admin:crm_supporter_change", args=[supporter.pk]) in row
        assert "Sam Taylor" in row
        assert postcode in row
        assert "Active" in row
        assert timezone.localtime(supporter.created_at).strftime("%d/%m/%Y") in row
    assert (
        f'href="/admin/crm/supporter/?segment={lobby_day.pk}">See all 2 in the supporter list'
        in (content)
    )


# The list -----------------------------------------------------------------------------------


def segment_row(content, segment):
    return re.search(
        rf"<tr>(?:(?!</tr>).)*?/crm/segment/{segment.pk}/change/.*?</tr>", content, re.S
    ).group(0)


def text(html):
    return re.sub(r"<[^>]+>", "", html)


def test_list_shows_each_size_with_its_age_and_never_counts(staff_client, interest):
    """The list shows the size last counted; supporters joining since do not change it."""
    counted = timezone.now() - datetime.timedelta(minutes=3, seconds=5)
    big = SegmentFactory(name="Big")
    Segment.objects.filter(pk=big.pk).update(size=1204, size_counted_at=counted)
    fresh = SegmentFactory(name="Fresh")
    SupporterFactory()  # would make the count 1 if the list counted

    content = staff_client.get(reverse("admin:crm_segment_changelist")).content.decode()
    assert "1,204 · 3\xa0minutes ago" in text(segment_row(content, big))
    assert "not counted yet" in text(segment_row(content, fresh))


def test_list_says_when_a_segment_cannot_be_counted(staff_client):
    old = CampaignInterest.objects.create(slug="old", name="Old campaign")
    broken = SegmentFactory(name="Broken", rules={"interests": ["old"]})
    old.delete()
    from crm.services.segments import segment_sizes_refresh

    segment_sizes_refresh()
    content = staff_client.get(reverse("admin:crm_segment_changelist")).content.decode()
    assert "rules need fixing · just now" in text(segment_row(content, broken))


def test_list_names_and_links_the_mailings_that_use_each_segment(staff_client, lobby_day):
    unused = SegmentFactory(name="Unused")
    appeal = MailingFactory(name="Spring appeal")
    appeal.include_segments.set([lobby_day])
    briefing = MailingFactory(name="Autumn briefing", status=Mailing.Status.SENT)
    briefing.exclude_segments.set([lobby_day])

    content = staff_client.get(reverse("admin:crm_segment_changelist")).content.decode()
    row = segment_row(content, lobby_day)
    appeal_url = reverse("admin:mailings_mailing_change", args=[appeal.pk])
    briefing_url = reverse("admin:mailings_mailing_change", args=[briefing.pk])
    assert f'<a href="{briefing_url}">Autumn briefing</a> (sent, leaves it out)' in row
    assert f'<a href="{appeal_url}">Spring appeal</a> (draft)' in row
    assert "Spring appeal" not in segment_row(content, unused)


def test_list_names_three_mailings_and_counts_the_rest(staff_client, lobby_day):
    for n in range(5):
        MailingFactory(name=f"Issue {n}").include_segments.set([lobby_day])
    row = segment_row(
        staff_client.get(reverse("admin:crm_segment_changelist")).content.decode(), lobby_day
    )
    assert row.count("/admin/mailings/mailing/") == 3
    assert "and 2 more" in row
