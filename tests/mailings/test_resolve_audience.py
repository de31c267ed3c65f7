"""Who a mailing goes to: resolved once, at send time, into one delivery per recipient."""

import pytest

from crm import services as crm
from crm.models import Segment, Supporter
from mailings.models import Delivery
from mailings.sending import mailing_resolve_audience
from tests.factories import MailingFactory, SegmentFactory, SupporterFactory

pytestmark = pytest.mark.django_db


def recipients(mailing):
    mailing_resolve_audience(mailing=mailing)
    return set(Delivery.objects.filter(mailing=mailing).values_list("supporter__email", flat=True))


def test_subscribers_to_any_chosen_interest_receive_it(interest, other_interest):
    SupporterFactory(email="r2p@example.org", subscribed_to=[interest])
    SupporterFactory(email="events@example.org", subscribed_to=[other_interest])
    SupporterFactory(email="both@example.org", subscribed_to=[interest, other_interest])
    SupporterFactory(email="none@example.org")

    assert recipients(MailingFactory(interests=[interest])) == {
        "r2p@example.org",
        "both@example.org",
    }


def test_unmailable_supporters_are_left_out(interest):
    """Suppressed, unsubscribed, bounced, complained and erased supporters get nothing."""
    keep = SupporterFactory(email="keep@example.org", subscribed_to=[interest])
    suppressed = SupporterFactory(email="suppressed@example.org", subscribed_to=[interest])
    crm.suppression_add(email=suppressed.email, reason="staff")
    unsubscribed = SupporterFactory(email="left@example.org", subscribed_to=[interest])
    crm.supporter_unsubscribe(supporter=unsubscribed, interest=interest, method="email_link")
    for status in ("bounced", "complained"):
        person = SupporterFactory(email=f"{status}@example.org", subscribed_to=[interest])
        Supporter.objects.filter(pk=person.pk).update(status=status)
    erased = SupporterFactory(email="erased@example.org", subscribed_to=[interest])
    crm.supporter_erase(supporter=erased)

    assert recipients(MailingFactory(interests=[interest])) == {keep.email}


def test_included_segment_adds_no_one_outside_the_mailings_interests(interest, other_interest):
    """A volunteer who only chose another topic never gets a mailing about this one."""
    segment = SegmentFactory(kind=Segment.Kind.STATIC)
    volunteer = SupporterFactory(email="volunteer@example.org", subscribed_to=[other_interest])
    unconsented = SupporterFactory(email="no-consent@example.org")
    crm.segment_add_members(
        segment=segment, supporters=Supporter.objects.filter(pk__in=[volunteer.pk, unconsented.pk])
    )
    SupporterFactory(email="r2p@example.org", subscribed_to=[interest])
    mailing = MailingFactory(interests=[interest])
    mailing.include_segments.set([segment])

    assert recipients(mailing) == {"r2p@example.org"}


def test_segment_only_mailing_needs_a_subscription_to_some_interest(other_interest):
    segment = SegmentFactory(kind=Segment.Kind.RULES, rules={"postcode_prefixes": ["EH1"]})
    SupporterFactory(
        email="edinburgh@example.org", postcode="EH1 1AA", subscribed_to=[other_interest]
    )
    SupporterFactory(email="no-topics@example.org", postcode="EH1 2BB")
    mailing = MailingFactory()
    mailing.include_segments.set([segment])

    assert recipients(mailing) == {"edinburgh@example.org"}


def test_excluded_segment_wins(interest):
    press = SegmentFactory(kind=Segment.Kind.RULES, rules={"tags": ["press"]})
    journalist = SupporterFactory(email="journalist@example.org", subscribed_to=[interest])
    journalist.tags.create(name="press")
    SupporterFactory(email="reader@example.org", subscribed_to=[interest])
    mailing = MailingFactory(interests=[interest])
    mailing.exclude_segments.set([press])

    assert recipients(mailing) == {"reader@example.org"}


def test_resolving_twice_adds_no_one_twice(interest):
    SupporterFactory(subscribed_to=[interest])
    SupporterFactory(subscribed_to=[interest])
    mailing = MailingFactory(interests=[interest])

    assert mailing_resolve_audience(mailing=mailing) == 2
    assert mailing_resolve_audience(mailing=mailing) == 2
    assert Delivery.objects.filter(mailing=mailing).count() == 2


def test_mailing_with_no_interest_or_segment_goes_to_nobody(interest):
    SupporterFactory(subscribed_to=[interest])

    assert recipients(MailingFactory()) == set()


@pytest.mark.postgres
def test_audience_is_one_insert_on_postgresql(interest, django_assert_max_num_queries):
    for _ in range(20):
        SupporterFactory(subscribed_to=[interest])
    mailing = MailingFactory(interests=[interest])

    with django_assert_max_num_queries(6):
        assert mailing_resolve_audience(mailing=mailing) == 20
