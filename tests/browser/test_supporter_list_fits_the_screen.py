"""The supporter list fits a 1280-pixel screen, one line per supporter, however long the values."""

import pytest

from crm.models import CampaignInterest
from tests.factories import PartnerOrganisationFactory, SupporterFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_list_fits_1280_pixels_with_one_line_per_supporter(chromium, live_server, superuser):
    partner = PartnerOrganisationFactory(
        name="The International Coalition for the Responsibility to Protect (UK branch)"
    )
    topics = [
        CampaignInterest.objects.create(slug=f"topic-{n}", name=f"Atrocity prevention topic {n}")
        for n in range(4)
    ]
    for n in range(30):
        SupporterFactory(
            email=f"a.very.long.address.for.supporter.number.{n}@campaigns.example.org",
            first_name="Maximilianne-Josephine",
            last_name=f"Featherstonehaugh-Cholmondeley {n}",
            postcode="SW1A 1AA",
            partner=partner,
            source="partner_import",
            subscribed_to=topics,
        )
    context = chromium.new_context(viewport={"width": 1280, "height": 800}, locale="en-GB")
    page = context.new_page()
    page.goto(f"{live_server.url}/admin/login/")
    page.get_by_label("Username").fill("root")
    page.get_by_label("Password").fill("pw")
    page.get_by_role("button", name="Log in").click()

    page.goto(f"{live_server.url}/admin/crm/supporter/")

    table = page.locator("#result_list")
    table.wait_for()
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 1280
    box = table.bounding_box()
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= 1280
    rows = page.evaluate(
        """() => [...document.querySelectorAll('#result_list tbody tr')].map(row => {
            const cell = row.querySelector('td.field-name_column');
            const style = getComputedStyle(cell);
            const line = parseFloat(style.lineHeight) || 1.2 * parseFloat(style.fontSize);
            const padding = parseFloat(style.paddingTop) + parseFloat(style.paddingBottom);
            return {height: row.getBoundingClientRect().height, line, padding};
        })"""
    )
    assert len(rows) == 30
    for row in rows:
        # One line of text and the cell's padding; a second line would add a whole line.
        assert row["height"] < row["padding"] + 1.5 * row["line"] + 2, row
    # The full value is on hover.
    email = page.locator("#result_list .field-email_column span").first
    assert email.get_attribute("title").endswith("@campaigns.example.org")
    assert "30 supporters" in page.locator(".paginator").inner_text()
    context.close()
