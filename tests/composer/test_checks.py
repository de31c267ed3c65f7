"""The accessibility and quality check finds what staff should fix (mailings.composer.checks)."""

import pytest

from mailings.composer import checks
from mailings.models import EmailTemplate
from tests.factories import MailingFactory

pytestmark = pytest.mark.django_db

WORDS = " ".join(["Prevention saves lives and costs less than conflict."] * 8)
GOOD = [
    {"type": "heading", "level": 1, "text": "The UK's duty to prevent atrocities"},
    {
        "type": "text",
        "html": f'<p>Dear {{{{ first_name|default:"friend" }}}}, {WORDS} '
        '<a href="https://example.org/briefing">Read our two-page briefing</a>.</p>',
    },
    {
        "type": "image",
        "src": "https://example.org/vigil.png",
        "alt": "Candles at a vigil",
        "width": 536,
    },
    {"type": "heading", "level": 2, "text": "What prevention looks like"},
    {"type": "text", "html": "<h3>Early warning</h3><p>Warning that reaches ministers.</p>"},
    {"type": "button", "label": "Write to your MP", "url": "https://example.org/mp"},
]


def problems_in(blocks, **fields):
    mailing = MailingFactory(blocks=blocks, **fields)
    return checks.check_mailing(mailing)


def codes(problems):
    return [problem.code for problem in problems]


def with_block(block, at=2):
    return [*GOOD[:at], block, *GOOD[at:]]


def test_a_good_newsletter_has_no_problems():
    assert problems_in(GOOD) == []


def test_image_without_alt_text_blocks_sending_and_names_the_block():
    [problem] = problems_in(
        with_block({"id": "pic", "type": "image", "src": "https://example.org/a.png", "width": 1})
    )

    assert problem.code == "image_alt"
    assert problem.blocking is True
    assert (problem.block_id, problem.block_index, problem.block_type) == ("pic", 3, "image")
    assert str(problem).startswith("Block 3 (image): The image has no alt text")


def test_image_without_alt_text_in_raw_html_is_found_too():
    found = problems_in(with_block({"type": "html", "html": '<img src="/x.png" width="10">'}))

    assert codes(found) == ["image_alt"]


def test_image_without_width_is_advice():
    [problem] = problems_in(
        with_block({"type": "image", "src": "https://example.org/a.png", "alt": "A map"})
    )

    assert problem.code == "image_width" and problem.blocking is False


@pytest.mark.parametrize(
    "link", ["click here", "Here", "Read more…", "https://example.org/briefing", "www.x.org"]
)
def test_link_text_that_says_nothing_is_found(link):
    found = problems_in(
        with_block({"type": "text", "html": f'<p><a href="https://example.org/b">{link}</a></p>'})
    )

    assert codes(found) == ["link_text"]
    assert found[0].blocking is False


def test_a_button_that_says_click_here_is_found():
    found = problems_in(
        with_block({"type": "button", "label": "Click here", "url": "https://example.org/x"})
    )

    assert codes(found) == ["link_text"]


def test_headings_that_skip_a_level_are_found():
    found = problems_in(with_block({"type": "text", "html": "<h4>Too deep</h4>"}, at=1))

    assert codes(found) == ["heading_order"]
    assert "level 4 heading follows a level 1 heading" in found[0].message


def test_the_templates_title_counts_as_the_first_heading():
    """A newsletter may start at level 2: the template's header is its h1."""
    blocks = [{"type": "heading", "level": 2, "text": "News"}, *GOOD[1:3]]

    assert problems_in(blocks) == []


def test_links_that_are_not_https_are_found():
    found = problems_in(
        with_block(
            {"type": "text", "html": '<p><a href="http://example.org/old">Old report</a></p>'}
        )
    )

    assert codes(found) == ["insecure_link"]
    assert "http://example.org/old" in found[0].message


def test_an_email_that_is_only_an_image_is_found():
    found = problems_in([GOOD[2]])

    assert codes(found) == ["only_images"]


def test_a_missing_preheader_is_found():
    assert codes(problems_in(GOOD, preheader="")) == ["preheader"]


def test_an_email_gmail_would_clip_is_found():
    huge = "<p>" + "Words that go on. " * 7000 + "</p>"

    found = problems_in(with_block({"type": "text", "html": huge}))

    assert codes(found) == ["too_big"]
    assert "102 KB" in found[0].message


def test_low_contrast_template_colours_block_sending():
    template = EmailTemplate.objects.create(
        name="Pale", text_colour="#999999", button_colour="#ffcc00"
    )

    found = problems_in(GOOD, template=template)

    assert set(codes(found)) == {"contrast"}
    assert all(problem.blocking for problem in found)
    messages = " ".join(problem.message for problem in found)
    assert "#999999 on #ffffff" in messages
    assert "white button text" in messages


@pytest.mark.parametrize(
    ("foreground", "background", "ratio"),
    [("#000000", "#ffffff", 21.0), ("#ffffff", "#ffffff", 1.0), ("#767676", "#ffffff", 4.54)],
)
def test_contrast_ratio_follows_wcag(foreground, background, ratio):
    assert checks.contrast_ratio(foreground, background) == pytest.approx(ratio, abs=0.01)


def test_unknown_merge_fields_and_invalid_blocks_block_sending():
    [merge] = problems_in(with_block({"type": "text", "html": "<p>Hi {{ nickname }}</p>"}))
    [invalid] = problems_in(with_block({"type": "button", "label": "Go", "url": ""}))

    assert merge.code == "merge_field" and merge.blocking is True
    assert invalid.code == "invalid" and "Block 3 (button)" in invalid.message
