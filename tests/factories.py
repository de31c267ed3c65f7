import factory

from crm import models as crm
from crm.models import LawfulBasis


class CampaignInterestFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = crm.CampaignInterest
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"interest-{n}")
    name = factory.Sequence(lambda n: f"Interest {n}")
    description = "What this topic is about."


class PartnerOrganisationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = crm.PartnerOrganisation
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"partner-{n}")
    name = factory.Sequence(lambda n: f"Partner {n}")
    lawful_basis = LawfulBasis.CONSENT


class SupporterFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = crm.Supporter
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"supporter{n}@example.org")
    first_name = "Sam"
    last_name = "Taylor"
    postcode = "SW1A 1AA"
    country = "GB"

    @factory.post_generation
    def subscribed_to(self, create, interests, **kwargs):
        from crm.services import consent_grant

        for interest in interests or ():
            consent_grant(supporter=self, interest=interest, method="staff", actor_label="test")


class SegmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = crm.Segment

    name = factory.Sequence(lambda n: f"Segment {n}")
    kind = crm.Segment.Kind.RULES
    rules = factory.LazyFunction(dict)


class MailingFactory(factory.django.DjangoModelFactory):
    """A newsletter ready to send; pass interests=[...] to choose its audience."""

    class Meta:
        model = "mailings.Mailing"
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Newsletter {n}")
    subject = "Why the UK needs an atrocity-prevention strategy"
    preheader = "Three things your MP can do this month."
    blocks = factory.LazyFunction(
        lambda: [
            {
                "id": "b1",
                "type": "heading",
                "level": 1,
                "text": 'Dear {{ first_name|default:"friend" }},',
            },
            {
                "id": "b2",
                "type": "text",
                "html": "<p>The UK has a duty to prevent atrocities. "
                '<a href="https://example.org/strategy">Read our briefing</a>.</p>',
            },
        ]
    )

    @factory.post_generation
    def interests(self, create, interests, **kwargs):
        if interests:
            self.interests.set(interests)


class DeliveryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "mailings.Delivery"

    mailing = factory.SubFactory(MailingFactory)
    supporter = factory.SubFactory(SupporterFactory)


def made_segments():
    """Segments made since the database was set up: all but the ready-made ones."""
    from crm.models import Segment
    from mailings.segments import QUIET_SEGMENT

    return Segment.objects.exclude(name=QUIET_SEGMENT)
