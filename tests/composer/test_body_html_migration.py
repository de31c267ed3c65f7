"""Migration mailings 0008 turns each newsletter's raw HTML into one "html" block.

The migration's data step runs here on today's models, which hold both
body_html and blocks (running the whole migration history back and forth
would cost the suite most of a minute).
"""

import importlib

import pytest
from django.apps import apps

from mailings import emails
from tests.factories import MailingFactory, SupporterFactory

pytestmark = pytest.mark.django_db

migration = importlib.import_module("mailings.migrations.0008_composer")
BODY = (
    '<h1>Dear {{ first_name|default:"friend" }},</h1>'
    '<p>Our <a href="https://example.org/b">briefing</a>.</p>'
)


def test_old_html_becomes_one_html_block_and_reads_the_same(interest):
    old = MailingFactory(blocks=[], body_html=BODY, body_text="Written by hand.")
    empty = MailingFactory(blocks=[], body_html="")
    reader = SupporterFactory(first_name="Amara", subscribed_to=[interest])
    before = emails.PreparedMailing(old).html.parts

    migration.body_html_to_blocks(apps, None)

    old.refresh_from_db()
    assert old.blocks == [{"id": "body", "type": "html", "html": BODY}]
    assert old.body_html == ""
    assert old.body_text == "Written by hand."
    empty.refresh_from_db()
    assert empty.blocks == []
    prepared = emails.PreparedMailing(old)
    assert "Dear Amara,</h1>" in prepared.message(reader).alternatives[0][0]
    assert prepared.html.parts == before


def test_undoing_the_migration_gives_the_html_back():
    old = MailingFactory(blocks=[], body_html=BODY)
    migration.body_html_to_blocks(apps, None)

    migration.blocks_to_body_html(apps, None)

    old.refresh_from_db()
    assert old.body_html == BODY
