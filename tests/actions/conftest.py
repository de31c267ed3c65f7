import pytest

from mailings.actions.models import Action, ActionPartner
from tests import factories


@pytest.fixture(autouse=True)
def _actions_cache(fresh_cache):
    """Each test counts signatures and rate limits in a cache of its own, and starts
    with nothing kept in memory by the pages."""
    from mailings.actions.views import memo

    memo.clear()
    yield
    memo.clear()


@pytest.fixture
def aegis(db):
    return factories.PartnerOrganisationFactory(slug="aegis", name="Aegis Trust")


@pytest.fixture
def stand(db):
    return factories.PartnerOrganisationFactory(slug="stand-uk", name="Stand UK")


@pytest.fixture
def petition(db, interest, aegis, stand):
    """An open petition to the Foreign Secretary, co-sponsored by Aegis Trust and Stand UK."""
    action = Action.objects.create(
        kind=Action.Kind.PETITION,
        title="Protect civilians in El Fasher",
        slug="el-fasher",
        status=Action.Status.OPEN,
        summary="Tell the Foreign Secretary to act before it is too late.",
        blocks=[{"id": "b1", "type": "text", "html": "<p>Reports of mass killings.</p>"}],
        target="The Foreign Secretary",
        goal=10_000,
    )
    action.interests.add(interest)
    ActionPartner.objects.create(
        action=action,
        partner=aegis,
        wording="Yes, Aegis Trust may email me about its work to prevent genocide.",
        privacy_url="https://www.aegistrust.org/privacy/",
        shared_fields=["first_name", "last_name", "postcode"],
        embed_origins="https://www.aegistrust.org\nhttps://aegis.example",
    )
    ActionPartner.objects.create(
        action=action,
        partner=stand,
        wording="Yes, Stand UK may email me about student campaigns.",
        privacy_url="https://stand.org.uk/privacy",
        shared_fields=["first_name"],
        embed_origins="https://stand.org.uk",
    )
    return action
