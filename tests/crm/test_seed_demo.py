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
