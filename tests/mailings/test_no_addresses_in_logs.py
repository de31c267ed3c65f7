"""Sending and tracking log ids, never supporters' email addresses."""

import logging

import pytest

from mailings import sending, services, throttle
from tests.factories import SupporterFactory

pytestmark = pytest.mark.django_db


def test_send_with_failures_logs_no_address(
    caplog, postmark_esp, newsletter, interest, campaign_user, fresh_cache,
    django_capture_on_commit_callbacks,
):  # fmt: skip
    throttle.clear()
    readers = [
        SupporterFactory(email=f"private{n}@example.org", subscribed_to=[interest])
        for n in range(3)
    ]
    postmark_esp.set_faults(invalid=[readers[0].email])
    postmark_esp.fail_next(1, status=503)
    caplog.set_level(logging.DEBUG)

    with django_capture_on_commit_callbacks(execute=False):
        services.mailing_send_now(mailing=newsletter, actor=campaign_user)
    services.mailing_start(mailing_id=newsletter.pk)
    sending.mailing_send_batches(mailing_id=newsletter.pk)

    assert "Mailing" in caplog.text
    assert "@example.org" not in caplog.text
