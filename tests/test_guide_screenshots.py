"""The staff guide's screenshots (devtools/screenshots.py) show pages that open on the demo data."""

import pytest

from crm.demo import demo_seed
from devtools import screenshots
from mailings.demo import demo_newsletters

pytestmark = pytest.mark.django_db

GUIDE = {
    "dashboard",
    "supporters",
    "supporter",
    "segments",
    "segment",
    "import",
    "import-preview",
    "mailings",
    "mailing",
    "report",
    "join",
    "preferences",
}


def test_every_page_the_guide_shows_opens_on_the_demo_data(client, superuser):
    """Each screenshot's page answers 200: staff pages for a superuser, supporter pages to anyone.

    The guide (docs/staff.md) links every one of these names; a page renamed or
    broken shows up here rather than as a missing picture.
    """
    demo_seed(supporters=200)
    demo_newsletters()
    shots = screenshots.shots()
    assert {shot.name for shot in shots} >= GUIDE

    for shot in (shot for shot in shots if shot.phone):
        assert client.get(shot.path).status_code == 200, shot.name
    client.force_login(superuser)
    for shot in (shot for shot in shots if not shot.phone):
        assert client.get(shot.path).status_code == 200, shot.name


def test_the_guide_shows_a_supporter_who_opened_and_clicked(superuser):
    """The supporter page pictured is someone with a history to read, not an empty record."""
    from crm.models import Supporter

    demo_seed(supporters=200)
    demo_newsletters()
    shot = next(shot for shot in screenshots.shots() if shot.name == "supporter")

    supporter = Supporter.objects.get(pk=shot.path.rstrip("/").split("/")[-2])
    assert supporter.status == Supporter.Status.ACTIVE
    assert supporter.deliveries.filter(events__event_type="clicked").exists() is True
