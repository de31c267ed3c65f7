"""Mail a test sends reaches the test run's own sink, never a developer's on 127.0.0.1:8025."""

import errno
import os
import socket
import subprocess
import sys

import pytest
from django.test import Client

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("tasks_run_now", "fresh_cache")]

DEVELOPER_SINK = ("127.0.0.1", 8025)  # where `make run` starts python -m mailsink


@pytest.fixture
def developer_sink():
    """Listen where a developer's mail sink would, when that port is free.

    Yield a function that returns how many connections arrived, or None when
    the port is taken (a developer's sink is running: then nothing may reach
    it either, which the test run's own sink receiving the mail shows).
    """
    listener = socket.socket()
    try:
        listener.bind(DEVELOPER_SINK)
    except OSError as error:
        listener.close()
        if error.errno != errno.EADDRINUSE:
            raise
        yield lambda: None
        return
    listener.listen(16)
    listener.setblocking(False)

    def connections():
        count = 0
        while True:
            try:
                connection, _ = listener.accept()
            except BlockingIOError:
                return count
            connection.close()
            count += 1

    yield connections
    listener.close()


def test_a_sign_up_confirmation_goes_to_the_test_runs_own_sink(
    settings, developer_sink, _mail_sink_of_the_test_run, interest
):
    """With the product's default mail set-up, the confirmation lands in this run's sink."""
    sink = _mail_sink_of_the_test_run
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": "mailsink", **settings.ANYMAIL}

    Client().post("/join/", {"email": "own-sink@example.org", "interests": ["r2p"]})

    assert sink.port != DEVELOPER_SINK[1]
    assert [m.address for m in sink.messages(to="own-sink@example.org")] == ["own-sink@example.org"]
    assert developer_sink() in (0, None)


def test_processes_a_test_starts_send_to_the_test_runs_own_sink(_mail_sink_of_the_test_run):
    """Workers and web servers a test starts read the environment: it names this run's sink."""
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", "DEBUG": "1"}
    environment.pop("EMAIL_BACKEND", None)
    script = "from django.conf import settings; print(settings.ANYMAIL['POSTMARK_API_URL'])"

    printed = subprocess.run(
        [sys.executable, "-c", script],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()

    assert printed == _mail_sink_of_the_test_run.postmark_api_url
