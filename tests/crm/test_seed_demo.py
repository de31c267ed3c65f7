import pytest
from django.core.management import call_command
from django.db.models import Exists, OuterRef

from crm.models import (
    CampaignInterest,
    ConsentRecord,
    PartnerOrganisation,
    Segment,
    Subscription,
    Supporter,
)
from mailings.actions.models import Signature

pytestmark = pytest.mark.django_db


def test_seed_demo_creates_the_campaigns_real_themes_and_partners():
    call_command("seed_demo", supporters=300, verbosity=0)
    assert set(PartnerOrganisation.objects.values_list("name", flat=True)) >= {
        "Protection Approaches",
        "Waging Peace",
        "Aegis Trust",
        "Jo Cox Foundation",
        "Stand UK",
        "ICR2P",
    }
    assert "Responsibility to Protect" in CampaignInterest.objects.values_list("name", flat=True)
    assert Supporter.objects.count() == 300
    assert not Supporter.objects.exclude(email__endswith="@example.org").exists()
    for segment in Segment.objects.all():
        segment.supporters().count()


def test_every_demo_subscription_is_backed_by_a_consent_record():
    call_command("seed_demo", supporters=200, verbosity=0)
    granted = ConsentRecord.objects.filter(
        supporter=OuterRef("supporter"), interest=OuterRef("interest"), action="granted"
    )
    assert Subscription.objects.exists()
    assert not Subscription.objects.filter(~Exists(granted)).exists()


def test_seed_demo_if_empty_leaves_existing_data_alone(supporter):
    call_command("seed_demo", supporters=50, if_empty=True, verbosity=0)
    assert Supporter.objects.count() == 1


def test_seed_demo_opens_a_co_sponsored_petition_with_signatures(client):
    call_command("seed_demo", supporters=200, verbosity=0)

    page = client.get("/act/protect-civilians-in-sudan/")

    assert page.status_code == 200
    text = page.content.decode()
    assert "Protect civilians in Darfur" in text
    assert "Waging Peace may email me" in text and "Aegis Trust may email me" in text
    signed = Signature.objects.filter(action__slug="protect-civilians-in-sudan").count()
    assert 0 < signed <= 200
    assert f"{signed:,}" in text  # the count, at once
