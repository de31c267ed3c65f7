"""Blocks become a responsive email, its plain text and a web page (mailings.composer.render)."""

import re

import pytest

from mailings.composer import render
from mailings.models import EmailTemplate
from tests.factories import MailingFactory

pytestmark = pytest.mark.django_db

EVERY_BLOCK = [
    {"type": "heading", "level": 1, "text": "First: the heading"},
    {"type": "text", "html": '<p>Second: Dear {{ first_name|default:"friend" }}.</p>'},
    {
        "type": "image",
        "src": "https://example.org/third.png",
        "alt": "Third: a vigil",
        "width": 300,
    },
    {"type": "button", "label": "Fourth: sign", "url": "https://example.org/sign"},
    {"type": "quote", "html": "<p>Fifth: never again</p>", "cite": "A survivor"},
    {"type": "divider"},
    {"type": "columns", "columns": [{"html": "<p>Sixth: left</p>"}, {"html": "<p>Seventh</p>"}]},
    {
        "type": "action",
        "headline": "Eighth: write to your MP",
        "html": "<p>Ninth: five minutes.</p>",
        "label": "Tenth: write now",
        "url": "https://example.org/mp",
    },
    {"type": "html", "html": "<table><tr><td>Eleventh: raw</td></tr></table>"},
]
ORDER = ["First", "Second", "Third", "Fourth", "Fifth", "Sixth", "Seventh", "Eighth", "Ninth",
         "Tenth", "Eleventh"]  # fmt: skip


@pytest.fixture
def template(db):
    return EmailTemplate.objects.create(
        name="House style",
        brand_colour="#123456",
        button_colour="#a01010",
        postal_address="1 Example Street\nLondon N1 1AA",
        footer_text="Registered in England.",
        is_default=True,
    )


@pytest.fixture
def mailing(template, interest):
    return MailingFactory(
        blocks=EVERY_BLOCK, preheader="Three things your MP can do", interests=[interest]
    )


def positions(text):
    return [text.index(word) for word in ORDER]


def test_every_block_renders_in_order_in_the_html(mailing):
    email = render.render_mailing(mailing)

    found = positions(email.html)
    assert found == sorted(found)


def test_every_block_renders_in_order_in_the_text(mailing):
    text = render.render_mailing(mailing).text

    assert positions(text) == sorted(positions(text))
    assert "First: the heading\n==================" in text
    assert "[Third: a vigil]" in text
    assert "Fourth: sign: https://example.org/sign" in text
    assert "> Fifth: never again\n> -- A survivor" in text
    assert "Tenth: write now: https://example.org/mp" in text
    assert "<" not in text.replace("<http", "")


def test_text_links_read_as_text_then_address():
    text = render.blocks_to_text(
        render.block_types.clean_blocks(
            [
                {
                    "type": "text",
                    "html": '<ul><li><a href="https://example.org/a">Our briefing</a></li></ul>',
                }
            ]
        )
    )

    assert text == "- Our briefing (https://example.org/a)"


def test_html_is_responsive_with_inlined_styles(mailing):
    html = render.render_mailing(mailing).html

    assert "@media only screen and (min-width:480px)" in html
    assert re.search(r'<h1 style="[^"]*font-size:28px', html)
    assert re.search(r'<p style="margin:0 0 16px 0;">Second', html)
    assert 'background-color="#a01010"' in html or "background:#a01010" in html


def test_html_is_ready_for_dark_mode(mailing):
    html = render.render_mailing(mailing).html

    assert '<meta name="color-scheme" content="light dark"' in html
    assert "@media (prefers-color-scheme: dark)" in html


def test_html_has_the_preheader_and_the_web_copy_link(mailing):
    html = render.render_mailing(mailing).html

    assert re.search(r'<div style="display:none;[^>]*>Three things your MP can do', html)
    assert f'href="https://rally.example.org/newsletters/{mailing.public_id}/"' in html
    assert "View this email in your browser" in html


def test_footer_always_has_unsubscribe_preferences_and_postal_address(mailing):
    email = render.render_mailing(mailing)

    for part in (email.html, email.text):
        assert "{{ unsubscribe_url }}" in part
        assert "{{ preferences_url }}" in part
        assert "1 Example Street, London N1 1AA" in part
        assert "Registered in England." in part


def test_a_mailing_without_template_uses_the_built_in_style(interest):
    mailing = MailingFactory(interests=[interest])

    html = render.render_mailing(mailing).html

    assert "#c8102e" in html  # the built-in button and accent colour
    assert "{{ unsubscribe_url }}" in html


def test_html_is_compiled_once_for_the_same_source(mailing):
    render.mjml_to_html.cache_clear()

    render.render_mailing(mailing)
    render.render_mailing(mailing)

    assert render.mjml_to_html.cache_info().hits == 1


def test_web_html_shows_fallbacks_and_no_personal_links():
    html = render.blocks_to_web_html(
        [
            {
                "type": "text",
                "html": '<p>Dear {{ first_name|default:"friend" }} {{ last_name }},'
                ' <a href="{{ unsubscribe_url }}">leave</a></p>',
            },
            {"type": "button", "label": "Your preferences", "url": "{{ preferences_url }}"},
            {"type": "button", "label": "Sign", "url": "https://example.org/sign"},
        ]
    )

    assert "Dear friend ," in html
    assert "{{" not in html
    assert "Your preferences" not in html
    assert '<a rel="noopener">leave</a>' in html
    assert '<a href="https://example.org/sign">Sign</a>' in html


def test_web_html_has_no_inline_styles_or_scripts_even_from_raw_html():
    html = render.blocks_to_web_html(
        [{"type": "html", "html": '<p style="color:red" onclick="x()">Hi<script>x()</script></p>'}]
    )

    assert "style=" not in html and "onclick" not in html and "<script" not in html
    assert "Hi" in html


def test_web_html_escapes_supporter_facing_text():
    html = render.blocks_to_web_html([{"type": "heading", "level": 2, "text": "<b>Sudan</b>"}])

    assert html == '<h2 class="composer-heading">&lt;b&gt;Sudan&lt;/b&gt;</h2>'


def test_a_colour_that_is_not_hex_falls_back_to_the_built_in_one(interest):
    template = EmailTemplate.objects.create(
        name="Odd", brand_colour="#12345g", text_colour='"><b x'
    )

    html = render.render_mailing(MailingFactory(template=template, interests=[interest])).html

    assert "#12345g" not in html and "<b x" not in html
    assert "#0d3b4f" in html and "#1d2a33" in html  # the built-in brand and text colours
