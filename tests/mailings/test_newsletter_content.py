"""Building the message: merge fields, plain text, links, warnings."""

import pytest

from mailings import emails, tokens
from mailings.emails import MergeFieldError, html_to_text
from tests.factories import MailingFactory, SupporterFactory

pytestmark = pytest.mark.django_db


def test_unknown_merge_field_names_the_valid_ones():
    with pytest.raises(
        MergeFieldError, match=r"Unknown merge field \{\{ nickname \}\}; use one of"
    ):
        emails.check_merge_fields("Hello {{ nickname }}")


def test_template_tags_are_refused():
    with pytest.raises(MergeFieldError, match="not a merge field Rally understands"):
        emails.check_merge_fields("{% if first_name %}Hi{% endif %}")


def test_fallback_works_in_subject_preheader_and_body(interest):
    mailing = MailingFactory(
        interests=[interest],
        subject='News for {{ first_name|default:"you" }}',
        preheader='Hello {{ first_name|default:"friend" }}',
        blocks=[
            {"type": "text", "html": "<p>{{ full_name|default:'supporter' }} in {{ postcode }}</p>"}
        ],
    )
    nameless = SupporterFactory(first_name="", last_name="", postcode="EH1 1AA")

    message = emails.PreparedMailing(mailing).message(nameless)

    assert message.subject == "News for you"
    html = message.alternatives[0][0]
    assert "Hello friend" in html
    assert "supporter in EH1 1AA" in html


def test_supporter_values_are_escaped_in_html_only(interest):
    mailing = MailingFactory(
        interests=[interest], blocks=[{"type": "text", "html": "<p>Hi {{ first_name }}</p>"}]
    )
    tricky = SupporterFactory(first_name="<b>Ann & Co</b>")

    message = emails.PreparedMailing(mailing).message(tricky)

    assert "Hi &lt;b&gt;Ann &amp; Co&lt;/b&gt;" in message.alternatives[0][0]
    assert "Hi <b>Ann & Co</b>" in message.body


def test_html_to_text_keeps_links_lists_and_paragraphs():
    text = html_to_text(
        "<h1>Title</h1><p>Read <a href='https://example.org/a'>the briefing</a>.</p>"
        "<ol><li>One</li><li>Two</li></ol><style>p{color:red}</style><p>Bye<br>now</p>"
    )

    assert text == (
        "Title\n\nRead the briefing (https://example.org/a).\n\n1. One\n2. Two\n\nBye\nnow"
    )


def test_mailing_without_interest_links_to_the_preference_centre(interest):
    mailing = MailingFactory(
        blocks=[{"type": "text", "html": "<p><a href='{{ unsubscribe_url }}'>leave</a></p>"}]
    )
    reader = SupporterFactory(subscribed_to=[interest])

    message = emails.PreparedMailing(mailing).message(reader)

    assert 'href="https://rally.example.org/preferences/' in message.alternatives[0][0]
    assert "Unsubscribe or choose what you hear about" in message.alternatives[0][0]
    # The one-click header still works: it is the RFC 8058 URL.
    assert "/unsubscribe/" in message.extra_headers["List-Unsubscribe"]


def test_links_match_the_token_module(interest, newsletter):
    reader = SupporterFactory(subscribed_to=[interest])
    prepared = emails.PreparedMailing(newsletter)
    prepared.links(SupporterFactory())  # the first call checks the shape

    links = prepared.links(reader)

    assert tokens.read_unsubscribe_token(links["one_click"].split("/")[-2]) == (
        reader,
        newsletter.pk,
    )
    assert tokens.read_preferences_token(links["preferences_url"].split("/")[-2]) == reader


def test_preview_links_unsubscribe_nobody(newsletter):
    links = emails.PreparedMailing(newsletter).links(emails.PREVIEW_LINKS)

    assert tokens.read_unsubscribe_token(links["one_click"].split("/")[-2]) == (None, None)
