"""What staff see and may do on an A/B-tested or guarded mailing's pages."""

import pytest
from django.urls import reverse
from django.utils import timezone

from mailings.models import ABTest, Delivery, Mailing, Variant
from tests.abtests.conftest import SUBJECTS, drain, start

pytestmark = pytest.mark.django_db


def page(client, name, mailing, *args):
    return client.get(reverse(f"admin:mailings_mailing_{name}", args=[mailing.pk, *args]))


def test_variants_are_added_on_the_mailing_form_and_lettered_in_order(
    client, campaign_user, newsletter
):
    client.force_login(campaign_user)
    form = page(client, "change", newsletter).context["adminform"].form
    data = {
        name: value
        for name, value in form.initial.items()
        if name in form.fields and value is not None and name != "blocks"
    }
    data.update(
        {
            "name": newsletter.name,
            "subject": newsletter.subject,
            "interests": [i.pk for i in newsletter.interests.all()],
            "blocks": "[]",
            "ab_test-TOTAL_FORMS": "1",
            "ab_test-INITIAL_FORMS": "0",
            "ab_test-0-test_percent": "30",
            "ab_test-0-measure": "clicks",
            "ab_test-0-test_hours": "6",
            "ab_test-0-choose": "auto",
            "variants-TOTAL_FORMS": "2",
            "variants-INITIAL_FORMS": "0",
            "variants-0-subject": SUBJECTS[0],
            "variants-1-subject": SUBJECTS[1],
            "variants-1-preheader": "Five minutes, one email to your MP.",
        }
    )
    client.post(reverse("admin:mailings_mailing_change", args=[newsletter.pk]), data)

    test = ABTest.objects.get(mailing=newsletter)
    assert (test.test_percent, test.test_hours) == (30, 6)
    variants = list(Variant.objects.filter(mailing=newsletter))
    assert [(v.label, v.subject) for v in variants] == [("A", SUBJECTS[0]), ("B", SUBJECTS[1])]


def test_mailing_page_shows_the_test_and_lets_a_campaign_manager_choose(
    client, campaign_user, tested, readers, django_capture_on_commit_callbacks, postmark_esp
):
    start(tested, campaign_user, django_capture_on_commit_callbacks)
    drain(tested)
    client.force_login(campaign_user)

    text = page(client, "change", tested).content.decode()

    assert "A/B test: 2 variants" in text
    assert "20 recipients wait for the winner" in text
    assert "Send A to the rest" in text and "Send B to the rest" in text

    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(
            reverse("admin:mailings_mailing_action", args=[tested.pk, "choose-winner"]),
            {"variant": tested.variants.get(position=1).pk},
        )
    assert response.status_code == 302
    assert Delivery.objects.filter(mailing=tested, status=Delivery.Status.HELD).count() == 0
    text = page(client, "change", tested).content.decode()
    assert "Variant <strong>B</strong> won (chosen by carl)" in text


def test_membership_staff_cannot_choose_a_winner(
    client, membership_user, tested, readers, campaign_user, django_capture_on_commit_callbacks
):
    start(tested, campaign_user, django_capture_on_commit_callbacks)
    client.force_login(membership_user)
    response = client.post(
        reverse("admin:mailings_mailing_action", args=[tested.pk, "choose-winner"]),
        {"variant": tested.variants.first().pk},
    )
    assert response.status_code == 403
    assert Delivery.objects.filter(mailing=tested, status=Delivery.Status.HELD).count() == 20


def test_a_variant_that_is_not_this_mailings_is_refused(
    client, campaign_user, tested, readers, interest, django_capture_on_commit_callbacks
):
    from tests.abtests.conftest import ab_mailing

    start(tested, campaign_user, django_capture_on_commit_callbacks)
    other = ab_mailing(interest).variants.first()
    client.force_login(campaign_user)
    url = reverse("admin:mailings_mailing_action", args=[tested.pk, "choose-winner"])
    assert client.post(url, {"variant": other.pk}).status_code == 404
    assert client.post(url, {"variant": "B"}).status_code == 403
    assert Delivery.objects.filter(mailing=tested, status=Delivery.Status.HELD).count() == 20


def test_report_shows_each_variant_and_how_sure_the_result_is(
    client, campaign_user, tested, readers, django_capture_on_commit_callbacks, postmark_esp
):
    start(tested, campaign_user, django_capture_on_commit_callbacks)
    drain(tested)
    for variant, clicks in zip(tested.variants.all(), (3, 4), strict=True):
        ids = Delivery.objects.filter(mailing=tested, variant=variant).values_list("pk", flat=True)
        Delivery.objects.filter(pk__in=list(ids[:clicks])).update(clicked_at=timezone.now())
    client.force_login(campaign_user)

    text = page(client, "report", tested).content.decode()

    assert "Variants in the test, judged by unique clicks" in text
    assert SUBJECTS[0] in text and SUBJECTS[1] in text
    assert "Too close to call: B has 40.0% clicked and A 30.0%" in text


def test_a_guarded_mailing_says_why_it_paused(client, campaign_user, newsletter):
    Mailing.objects.filter(pk=newsletter.pk).update(
        status=Mailing.Status.PAUSED,
        recipient_count=3000,
        guard_tripped="bounces",
        last_error="The deliverability guard paused sending: 80 of the 900 messages sent so far "
        "hard bounced: already 8.0% of the first 1,000 (the limit is 5%). Check where these "
        "addresses came from.",
    )
    client.force_login(campaign_user)

    text = page(client, "change", newsletter).content.decode()

    assert "Paused by the deliverability guard: too many hard bounces" in text
    assert "80 of the 900 messages sent so far" in text
    assert "Sending stopped:" not in text  # said once, in the guard's box
    assert ">Resume</button>" in text and ">Cancel mailing</button>" in text
