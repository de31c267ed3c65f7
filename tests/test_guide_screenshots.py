"""The staff guide's screenshots (devtools/screenshots.py) show pages that open on the demo data."""

import re
from pathlib import Path

import pytest

from crm.demo import demo_seed
from devtools import screenshots
from mailings.demo import demo_newsletters
from mailings.journeys.demo import demo_journeys

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent
# The staff guide, and the guides of its own for journeys that show its pictures.
GUIDES = [ROOT / "docs" / "staff.md", ROOT / "docs" / "journeys.md"]
PICTURES = ROOT / "docs" / "img" / "staff"


def _pictures_in_the_guide():
    return {
        name
        for guide in GUIDES
        for name in re.findall(r"img/staff/([a-z0-9-]+)\.png", guide.read_text())
    }


def test_every_page_the_guide_shows_opens_on_the_demo_data(client, superuser):
    """Each picture of the guide is made by the script, and its page answers 200 on the demo data.

    Staff pages for a superuser, supporter pages for anyone: a page renamed or
    broken shows up here rather than as a stale or missing picture.
    """
    demo_seed(supporters=200)
    demo_newsletters()
    demo_journeys()
    shots = screenshots.shots()
    # The unfold-* pictures are the record of a one-off trial (docs/staff.md, last section).
    made_by_the_script = {n for n in _pictures_in_the_guide() if not n.startswith("unfold-")}
    assert {shot.name for shot in shots} == made_by_the_script

    for shot in (shot for shot in shots if shot.phone):
        assert client.get(shot.path).status_code == 200, shot.name
    client.force_login(superuser)
    for shot in (shot for shot in shots if not shot.phone):
        assert client.get(shot.path).status_code == 200, shot.name


def test_the_guide_shows_a_supporter_who_opened_and_clicked():
    """The supporter page pictured is someone with a history to read, not an empty record."""
    from crm.models import Supporter

    demo_seed(supporters=200)
    demo_newsletters()
    demo_journeys()
    shot = next(shot for shot in screenshots.shots() if shot.name == "supporter")

    supporter = Supporter.objects.get(pk=shot.path.rstrip("/").split("/")[-2])
    assert supporter.status == Supporter.Status.ACTIVE
    assert supporter.deliveries.filter(events__event_type="clicked").exists() is True


def test_every_picture_the_guide_shows_is_in_the_repository():
    """The guides name no picture that docs/img/staff/ lacks."""
    missing = [name for name in _pictures_in_the_guide() if not (PICTURES / f"{name}.png").exists()]
    assert _pictures_in_the_guide() != set()
    assert missing == []
