"""The loopback ESP: Anymail's real Postmark and Mailgun backends talk to it unchanged."""

import datetime
import json
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
import requests
from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused
from anymail.message import AnymailMessage
from django.conf import settings as django_settings
from django.core.mail import get_connection

from mailings import esp
from mailsink import MailSink, MailSinkClient


@pytest.fixture(scope="module")
def running_sink():
    with MailSink(port=0, latency_ms=0) as sink:
        yield sink


@pytest.fixture
def sink(running_sink):
    """A mail sink with no messages, no faults and no latency."""
    running_sink.clear()
    running_sink.set_faults(latency_ms=0)
    yield running_sink
    running_sink.clear()


@pytest.fixture
def postmark(settings, sink):
    """Send through Anymail's real Postmark backend, pointed at the sink."""
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = {
        "POSTMARK_SERVER_TOKEN": "test-token",
        "POSTMARK_API_URL": sink.postmark_api_url,
    }
    return sink


@pytest.fixture
def mailgun(settings, sink):
    """Send through Anymail's real Mailgun backend, pointed at the sink."""
    settings.EMAIL_BACKEND = "anymail.backends.mailgun.EmailBackend"
    settings.ANYMAIL = {"MAILGUN_API_KEY": "key-test", "MAILGUN_API_URL": sink.mailgun_api_url}
    return sink


def newsletter(to, **kwargs):
    message = AnymailMessage(
        subject="The UK's duty to prevent atrocities",
        body="Write to your MP: https://rally.example.org/act/",
        from_email="Rally <newsletter@rally.example.org>",
        to=to,
        headers={
            "List-Unsubscribe": "<https://rally.example.org/u/abc/>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "List-Id": "Responsibility to Protect <r2p.rally.example.org>",
        },
        metadata={"mailing_id": "7"},
        tags=["newsletter"],
        **kwargs,
    )
    message.attach_alternative(
        "<p>Write to your <a href='https://rally.example.org/act/'>MP</a></p>", "text/html"
    )
    return message


def test_postmark_send_is_recorded_with_headers_metadata_and_message_id(postmark):
    """One message through the real Postmark backend is recorded as sent, with its id."""
    message = newsletter(["Alice <alice@example.org>"])
    message.send()

    [record] = postmark.messages()
    assert message.anymail_status.status == {"sent"}
    assert message.anymail_status.message_id == record.message_id
    assert record.esp == "postmark"
    assert record.to == "Alice <alice@example.org>"
    assert record.address == "alice@example.org"
    assert record.subject == "The UK's duty to prevent atrocities"
    assert record.header("list-unsubscribe") == "<https://rally.example.org/u/abc/>"
    assert record.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert record.headers["List-Id"] == "Responsibility to Protect <r2p.rally.example.org>"
    assert record.metadata == {"mailing_id": "7"}
    assert record.tags == ["newsletter"]
    assert "https://rally.example.org/act/" in record.text
    assert "<a href='https://rally.example.org/act/'>MP</a>" in record.html


def test_postmark_batch_records_one_message_per_recipient_from_one_call(postmark):
    """A merge_data batch is one API call and one record per recipient, each with its own data."""
    recipients = [f"supporter{i}@example.org" for i in range(50)]
    message = newsletter(
        recipients,
        merge_data={},
        merge_metadata={addr: {"delivery_id": str(i)} for i, addr in enumerate(recipients)},
        merge_headers={
            addr: {"List-Unsubscribe": f"<https://rally.example.org/u/{i}/>"}
            for i, addr in enumerate(recipients)
        },
    )
    message.send()

    assert postmark.recipients() == recipients
    assert [call.recipients for call in postmark.calls()] == [50]
    records = {r.address: r for r in postmark.messages()}
    assert records["supporter3@example.org"].metadata == {"mailing_id": "7", "delivery_id": "3"}
    assert (
        records["supporter3@example.org"].headers["List-Unsubscribe"]
        == "<https://rally.example.org/u/3/>"
    )
    assert records["supporter3@example.org"].headers["List-Id"].startswith("Responsibility")
    statuses = message.anymail_status.recipients
    assert (
        statuses["supporter3@example.org"].message_id
        == records["supporter3@example.org"].message_id
    )
    assert len({r.message_id for r in records.values()}) == 50


def test_mailgun_send_and_batch_substitute_recipient_variables(mailgun):
    """Mailgun batch sending gives each recipient their own metadata and headers."""
    newsletter(["Alice <alice@example.org>"]).send()
    recipients = ["bob@example.org", "carol@example.org"]
    message = newsletter(
        recipients,
        merge_data={},
        merge_metadata={
            "bob@example.org": {"delivery_id": "1"},
            "carol@example.org": {"delivery_id": "2"},
        },
        merge_headers={
            "bob@example.org": {"List-Unsubscribe": "<https://rally.example.org/u/b/>"},
            "carol@example.org": {"List-Unsubscribe": "<https://rally.example.org/u/c/>"},
        },
    )
    message.send()

    alice, bob, carol = mailgun.messages()
    assert mailgun.recipients() == ["alice@example.org", *recipients]
    assert alice.esp == "mailgun"
    assert alice.headers["List-Id"] == "Responsibility to Protect <r2p.rally.example.org>"
    assert alice.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert alice.metadata == {"mailing_id": "7"}
    assert alice.tags == ["newsletter"]
    assert bob.metadata == {"mailing_id": "7", "delivery_id": "1"}
    assert carol.headers["List-Unsubscribe"] == "<https://rally.example.org/u/c/>"
    assert message.anymail_status.status == {"queued"}
    assert message.anymail_status.message_id == bob.message_id == carol.message_id
    assert [call.accepted for call in mailgun.calls()] == [1, 2]


def test_mailgun_multipart_body_with_attachment_is_understood(mailgun):
    """With an attachment Anymail posts multipart/form-data; the message is still recorded."""
    message = newsletter(["alice@example.org"])
    message.attach("report.csv", "a,b\n1,2\n", "text/csv")
    message.send()

    [record] = mailgun.messages()
    assert record.subject == "The UK's duty to prevent atrocities"
    assert record.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


@pytest.mark.parametrize("backend", ["postmark", "mailgun"])
def test_server_error_raises_api_error_and_records_nothing(backend, request):
    """The next N calls answer 503; Anymail raises with the status, then sending recovers."""
    sink = request.getfixturevalue(backend)
    sink.fail_next(1, status=503)

    with pytest.raises(AnymailAPIError, match="503") as raised:
        newsletter(["alice@example.org"]).send()
    newsletter(["alice@example.org"]).send()

    assert raised.value.status_code == 503
    assert sink.recipients() == ["alice@example.org"]
    assert [call.status for call in sink.calls()] == [503, 200]


def test_fail_always_answers_every_call_until_turned_off(postmark):
    """A standing outage refuses every call until it is lifted."""
    postmark.fail_always(502)
    for _ in range(3):
        with pytest.raises(AnymailAPIError):
            newsletter(["alice@example.org"]).send()
    postmark.fail_always(None)
    newsletter(["alice@example.org"]).send()

    assert postmark.recipients() == ["alice@example.org"]


@pytest.mark.parametrize("backend", ["postmark", "mailgun"])
def test_rate_limit_answers_429_with_retry_after(backend, request):
    """A 429 carries Retry-After, which the sending engine reads from the error's response."""
    sink = request.getfixturevalue(backend)
    sink.rate_limit_next(1, retry_after=7)

    with pytest.raises(AnymailAPIError) as raised:
        newsletter(["alice@example.org"]).send()

    assert raised.value.status_code == 429
    assert raised.value.response.headers["Retry-After"] == "7"
    assert sink.messages() == []


def test_rejected_address_raises_recipients_refused(postmark):
    """Postmark refuses an inactive recipient (406); Anymail raises AnymailRecipientsRefused."""
    postmark.set_faults(reject=["Bounced@Example.org"])

    with pytest.raises(AnymailRecipientsRefused):
        newsletter(["bounced@example.org"]).send()

    assert postmark.messages() == []
    assert postmark.rejected() == ["bounced@example.org"]


def test_batch_with_rejected_and_invalid_addresses_reports_each(postmark):
    """In a batch only the refused recipients fail; the others are sent."""
    postmark.set_faults(reject=["bounced@example.org"], invalid=["typo@example.org"])
    message = newsletter(
        ["alice@example.org", "bounced@example.org", "typo@example.org"], merge_data={}
    )
    message.send()

    statuses = {addr: s.status for addr, s in message.anymail_status.recipients.items()}
    assert statuses == {
        "alice@example.org": "sent",
        "bounced@example.org": "rejected",
        "typo@example.org": "invalid",
    }
    assert postmark.recipients() == ["alice@example.org"]


def test_mailgun_drops_rejected_recipient_after_accepting_the_call(mailgun):
    """Mailgun queues the call and drops a suppressed recipient (reported later by webhook)."""
    mailgun.set_faults(reject=["bounced@example.org"])
    newsletter(["alice@example.org", "bounced@example.org"], merge_data={}).send()

    assert mailgun.recipients() == ["alice@example.org"]
    assert mailgun.rejected() == ["bounced@example.org"]


@pytest.mark.parametrize(("backend", "status"), [("postmark", 422), ("mailgun", 400)])
def test_recipient_limit_refuses_larger_calls_like_the_esp(backend, status, request):
    """A call over the per-call recipient limit is refused whole with the ESP's 4xx."""
    sink = request.getfixturevalue(backend)
    sink.set_faults(recipient_limit=2)

    with pytest.raises(AnymailAPIError) as raised:
        newsletter(["a@example.org", "b@example.org", "c@example.org"], merge_data={}).send()
    newsletter(["a@example.org", "b@example.org"], merge_data={}).send()

    assert raised.value.status_code == status
    assert sink.recipients() == ["a@example.org", "b@example.org"]


def test_postmark_batch_over_its_own_limit_of_500_is_refused(postmark):
    """Without a test limit the sink keeps Postmark's: at most 500 messages per batch."""
    recipients = [f"s{i}@example.org" for i in range(501)]

    with pytest.raises(AnymailAPIError, match="Too many batch messages") as raised:
        newsletter(recipients, merge_data={}).send()
    newsletter(recipients[:500], merge_data={}).send()

    assert raised.value.status_code == 422
    assert len(postmark.recipients()) == 500


def test_hang_times_out_the_client_and_records_nothing(postmark, settings):
    """A held call makes Anymail time out; by default the sink records nothing."""
    settings.ANYMAIL = {**settings.ANYMAIL, "REQUESTS_TIMEOUT": 0.1}
    postmark.hang_next(1, seconds=0.4)

    with pytest.raises(AnymailAPIError, match="Error posting"):
        newsletter(["alice@example.org"]).send()
    time.sleep(0.5)

    assert postmark.messages() == []
    assert [call.status for call in postmark.calls()] == [504]


def test_hang_with_accept_records_the_message_the_client_gave_up_on(postmark, settings):
    """The unavoidable window: the ESP accepted, the client timed out; a retry sends twice."""
    settings.ANYMAIL = {**settings.ANYMAIL, "REQUESTS_TIMEOUT": 0.1}
    postmark.hang_next(1, seconds=0.3, accept=True)

    with pytest.raises(AnymailAPIError):
        newsletter(["alice@example.org"]).send()
    newsletter(["alice@example.org"]).send()

    assert postmark.wait_for(2, timeout=2) is True
    assert Counter(postmark.recipients()) == {"alice@example.org": 2}


def test_latency_delays_each_call(postmark):
    """Injected latency is felt by the sender on every API call."""
    postmark.set_faults(latency_ms=60)
    connection = get_connection()
    started = time.perf_counter()
    with connection:
        for _ in range(3):
            newsletter(["alice@example.org"], connection=connection).send()
    elapsed = time.perf_counter() - started

    assert elapsed >= 0.18
    assert all(call.duration >= 0.06 for call in postmark.calls())


def test_requests_without_credentials_are_refused(sink):
    """Missing Postmark token or Mailgun key gets the ESP's 401."""
    postmark = requests.post(
        f"{sink.postmark_api_url}email", json={"From": "a@example.org"}, timeout=5
    )
    mailgun = requests.post(
        f"{sink.mailgun_api_url}/example.org/messages", data={"to": "a@example.org"}, timeout=5
    )

    assert postmark.status_code == 401
    assert postmark.json()["ErrorCode"] == 10
    assert mailgun.status_code == 401


def test_http_control_api_reads_filters_and_configures(postmark):
    """Another process can read recipients and messages and inject faults over HTTP."""
    client = MailSinkClient(postmark.url)
    newsletter(["alice@example.org"]).send()
    newsletter(["Bob <BOB@example.org>"]).send()

    assert client.recipients() == ["alice@example.org", "bob@example.org"]
    [bob] = client.messages(to="bob@example.org")
    assert bob.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert bob.html is not None
    assert [m.address for m in client.messages(since=bob.id - 1, bodies=False)] == [
        "bob@example.org"
    ]
    assert client.messages(bodies=False)[0].html is None

    plan = client.configure({"fail_next": {"count": 1, "status": 500}, "latency_ms": 0})
    assert plan["next"] == [{"kind": "status", "status": 500}]
    with pytest.raises(AnymailAPIError):
        newsletter(["carol@example.org"]).send()
    assert [c.status for c in client.calls()][-1] == 500

    client.clear()
    assert client.recipients() == []
    newsletter(["dave@example.org"]).send()
    assert postmark.last().id > bob.id
    assert postmark.last(to="DAVE@example.org").address == "dave@example.org"
    client.clear()
    assert client.stats()["calls"] == 0
    assert client.wait_for(1, timeout=0.1) is False


def test_http_control_api_explains_unknown_fault_settings(sink):
    """A misspelt fault setting is refused with the list of known ones."""
    response = requests.post(f"{sink.url}/api/faults", json={"fail_nxt": 1}, timeout=5)

    assert response.status_code == 400
    assert "fail_nxt" in response.json()["message"]
    assert "fail_next" in response.json()["message"]


def test_web_ui_lists_messages_and_shows_html_only_in_a_sandbox(postmark):
    """The newcomer's view escapes everything and isolates the email's HTML."""
    message = newsletter(["alice@example.org"])
    message.subject = "<script>alert('x')</script>"
    message.alternatives = []
    message.attach_alternative("<p>Hello</p><script>alert(1)</script>", "text/html")
    message.send()
    [record] = postmark.messages()

    index = requests.get(f"{postmark.url}/", timeout=5)
    page = requests.get(f"{postmark.url}/messages/{record.id}/", timeout=5)
    email = requests.get(f"{postmark.url}/messages/{record.id}/html", timeout=5)

    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in index.text
    assert "<script>" not in index.text
    assert "script-src" not in index.headers["Content-Security-Policy"]
    assert "<script>" not in page.text
    assert "<iframe title='HTML part' sandbox='allow-popups" in page.text
    assert "https://rally.example.org/u/abc/" in page.text
    assert "sandbox" in email.headers["Content-Security-Policy"]
    assert "default-src 'none'" in email.headers["Content-Security-Policy"]
    assert "<script>alert(1)</script>" in email.text
    assert requests.get(f"{postmark.url}/messages/999/", timeout=5).status_code == 404


def test_bodies_beyond_the_keep_window_are_dropped_but_recipients_kept(settings):
    """Large sends keep memory small: old records lose their bodies, never their recipient."""
    with MailSink(port=0, latency_ms=0, keep_bodies=3) as small:
        settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
        settings.ANYMAIL = {
            "POSTMARK_SERVER_TOKEN": "t",
            "POSTMARK_API_URL": small.postmark_api_url,
        }
        recipients = [f"s{i}@example.org" for i in range(5)]
        newsletter(recipients, merge_data={}).send()

        records = small.messages()
        assert small.recipients() == recipients
        assert [r.html is not None for r in records] == [False, False, True, True, True]


def test_persisted_messages_survive_a_restart(settings, tmp_path):
    """The development sink reloads what it received before a restart."""
    path = tmp_path / "mailsink" / "messages.jsonl"
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    with MailSink(port=0, latency_ms=0, persist_path=path) as first:
        settings.ANYMAIL = {
            "POSTMARK_SERVER_TOKEN": "t",
            "POSTMARK_API_URL": first.postmark_api_url,
        }
        newsletter(["alice@example.org"]).send()

    with MailSink(port=0, latency_ms=0, persist_path=path) as second:
        settings.ANYMAIL = {
            "POSTMARK_SERVER_TOKEN": "t",
            "POSTMARK_API_URL": second.postmark_api_url,
        }
        newsletter(["bob@example.org"]).send()
        assert [(r.id, r.address) for r in second.messages()] == [
            (1, "alice@example.org"),
            (2, "bob@example.org"),
        ]
        assert second.messages()[0].headers["List-Id"].startswith("Responsibility")
        second.clear()

    assert path.read_text() == ""


def test_mailsink_command_serves_the_default_settings(tmp_path):
    """`python -m mailsink` answers Postmark calls made with the development settings' token."""
    process = subprocess.Popen(
        [sys.executable, "-m", "mailsink", "--port", "0"],
        cwd=django_settings.BASE_DIR,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        first_line = process.stdout.readline()
        url = first_line.split(" at ")[1].split("/ ")[0]
        response = requests.post(
            f"{url}/postmark/email",
            headers={"X-Postmark-Server-Token": "mailsink"},
            json={
                "From": "newsletter@localhost",
                "To": "alice@example.org",
                "Subject": "Hi",
                "TextBody": "Hello",
            },
            timeout=5,
        )
        assert response.status_code == 200
        assert response.json()["ErrorCode"] == 0
        assert json.loads(requests.get(f"{url}/api/recipients", timeout=5).text)["recipients"] == [
            "alice@example.org"
        ]
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_mailsink_persists_to_the_file_it_is_given_and_stops_on_ctrl_c(tmp_path):
    """`--persist FILE` keeps what arrived across a restart; Ctrl-C stops the sink cleanly."""
    path = tmp_path / "mailsink" / "messages.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "mailsink", "--port", "0", "--persist", str(path)],
        cwd=django_settings.BASE_DIR,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = process.stdout.readline().split(" at ")[1].split("/ ")[0]
        response = requests.post(
            f"{url}/postmark/email",
            headers={"X-Postmark-Server-Token": "mailsink"},
            json={"From": "a@localhost", "To": "bob@example.org", "TextBody": "Hi"},
            timeout=5,
        )
        assert response.status_code == 200
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
        assert process.stdout.read().endswith("\nMail sink stopped.\n")
    finally:
        if process.poll() is None:
            process.kill()
    assert json.loads(path.read_text())["address"] == "bob@example.org"


def test_mailsink_needs_neither_django_nor_the_apps():
    """The sink runs in a process of its own: importing it loads no Django and no app."""
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, mailsink, mailsink.__main__; print(' '.join(sorted(sys.modules)))",
        ],
        cwd=django_settings.BASE_DIR,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    roots = {name.split(".")[0] for name in loaded}
    assert roots.isdisjoint({"django", "crm", "mailings", "project", "anymail", "celery"})


# -- the ESPs' read APIs: "did you accept this message?" ---------------------------------

BEFORE = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)


def delivery(to, delivery_id, **kwargs):
    message = newsletter([to], **kwargs)
    message.metadata = {**message.metadata, "delivery_id": str(delivery_id)}
    return message


def test_postmark_message_search_finds_a_message_by_recipient_and_metadata(postmark):
    """Postmark's outbound search filters on recipient and metadata_<key>, newest first."""
    first = delivery("alice@example.org", 1)
    first.send()
    delivery("bob@example.org", 2).send()
    delivery("alice@example.org", 3).send()
    token = {"X-Postmark-Server-Token": "test-token", "Accept": "application/json"}

    def search(**query):
        response = requests.get(
            f"{postmark.postmark_api_url}messages/outbound",
            params={"count": 50, "offset": 0, **query},
            headers=token,
            timeout=5,
        )
        assert response.status_code == 200, response.text
        return response.json()

    found = search(recipient="ALICE@example.org", metadata_delivery_id="1")
    assert found["TotalCount"] == 1
    [message] = found["Messages"]
    assert message["MessageID"] == first.anymail_status.message_id
    assert message["Recipients"] == ["alice@example.org"]
    assert message["To"] == [{"Email": "alice@example.org", "Name": None}]
    assert message["Metadata"] == {"mailing_id": "7", "delivery_id": "1"}
    assert message["Status"] == "Sent"
    assert [
        m["Metadata"]["delivery_id"] for m in search(recipient="alice@example.org")["Messages"]
    ] == ["3", "1"]
    assert search(metadata_delivery_id="9")["TotalCount"] == 0
    assert search(metadata_mailing_id="7", count=2, offset=2)["Messages"][0]["Recipients"] == [
        "alice@example.org"
    ]
    assert search(fromdate="2999-01-01T00:00:00")["TotalCount"] == 0
    assert search(tag="newsletter")["TotalCount"] == 3
    assert postmark.lookup_count == 6


def test_postmark_message_search_checks_token_and_paging(sink):
    """The search wants the server token, and count and offset, as Postmark does."""
    url = f"{sink.postmark_api_url}messages/outbound"

    anonymous = requests.get(url, params={"count": 1, "offset": 0}, timeout=5)
    no_count = requests.get(url, headers={"X-Postmark-Server-Token": "t"}, timeout=5)
    too_many = requests.get(
        url, params={"count": 501, "offset": 0}, headers={"X-Postmark-Server-Token": "t"}, timeout=5
    )

    assert anonymous.status_code == 401
    assert anonymous.json()["ErrorCode"] == 10
    assert no_count.status_code == 422
    assert "count" in no_count.json()["Message"]
    assert too_many.status_code == 422


def test_mailgun_events_list_accepted_messages_with_their_variables(mailgun):
    """Mailgun's events API gives one "accepted" event per recipient, with its user-variables."""
    recipients = ["bob@example.org", "carol@example.org", "dave@example.org"]
    message = newsletter(
        recipients,
        merge_data={},
        merge_metadata={address: {"delivery_id": str(n)} for n, address in enumerate(recipients)},
    )
    message.send()
    auth = ("api", "key-test")
    url = f"{mailgun.mailgun_api_url}/rally.example.org/events"

    carol = requests.get(url, params={"recipient": "carol@example.org"}, auth=auth, timeout=5)
    assert carol.status_code == 200
    [event] = carol.json()["items"]
    assert event["event"] == "accepted"
    assert event["user-variables"] == {"mailing_id": "7", "delivery_id": "1"}
    assert f"<{event['message']['headers']['message-id']}>" == message.anymail_status.message_id

    page = requests.get(url, params={"limit": 2, "ascending": "yes"}, auth=auth, timeout=5).json()
    assert [e["recipient"] for e in page["items"]] == recipients[:2]
    page = requests.get(page["paging"]["next"], auth=auth, timeout=5).json()
    assert [e["recipient"] for e in page["items"]] == recipients[2:]
    page = requests.get(page["paging"]["next"], auth=auth, timeout=5).json()
    assert page["items"] == []

    def count(**query):
        response = requests.get(url, params=query, auth=auth, timeout=5)
        assert response.status_code == 200, response.text
        return len(response.json()["items"])

    assert count(event="delivered") == 0
    assert count(event="accepted OR delivered") == 3
    assert count(begin="Tue, 01 Jan 2999 00:00:00 GMT") == 0
    assert count(begin=str(time.time() - 60), end=str(time.time() + 60)) == 3
    other_domain = requests.get(
        f"{mailgun.mailgun_api_url}/example.org/events", auth=auth, timeout=5
    )
    assert other_domain.json()["items"] == []
    assert requests.get(url, timeout=5).status_code == 401
    assert requests.get(url, params={"limit": 301}, auth=auth, timeout=5).status_code == 400


def test_sending_engine_finds_what_the_esp_accepted(postmark, mailgun, settings):
    """esp.accepted_message_id, through Anymail's own settings, asks each ESP correctly."""
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": "t", "POSTMARK_API_URL": postmark.postmark_api_url}
    sent = delivery("alice@example.org", 41)
    sent.send()
    connection = get_connection()

    assert (
        esp.accepted_message_id(
            connection, delivery_id=41, address="alice@example.org", since=BEFORE
        )
        == sent.anymail_status.message_id
    )
    assert (
        esp.accepted_message_id(
            connection, delivery_id=42, address="alice@example.org", since=BEFORE
        )
        is None
    )

    settings.EMAIL_BACKEND = "anymail.backends.mailgun.EmailBackend"
    settings.ANYMAIL = {"MAILGUN_API_KEY": "key-test", "MAILGUN_API_URL": mailgun.mailgun_api_url}
    sent = delivery("bob@example.org", 43)
    sent.send()
    connection = get_connection()

    found = esp.accepted_message_id(
        connection,
        delivery_id=43,
        address="bob@example.org",
        since=datetime.datetime.now(datetime.UTC),
        sender="Rally <newsletter@rally.example.org>",
    )
    assert found == sent.anymail_status.message_id  # in angle brackets, as Anymail keeps it
    assert (
        esp.accepted_message_id(
            connection,
            delivery_id=44,
            address="bob@example.org",
            since=BEFORE,
            sender="newsletter@rally.example.org",
        )
        is None
    )


def test_failing_lookups_leave_the_engine_unable_to_tell_and_sending_alone(postmark):
    """fail_lookups makes the read APIs answer an error; send calls still work."""
    client = MailSinkClient(postmark.url)
    client.configure({"fail_lookups": 503})
    delivery("alice@example.org", 1).send()

    with pytest.raises(esp.LookupUnavailable, match="503"):
        esp.accepted_message_id(
            get_connection(), delivery_id=1, address="alice@example.org", since=BEFORE
        )
    assert postmark.recipients() == ["alice@example.org"]
    assert client.faults["lookup_status"] == 503

    client.configure({"fail_lookups": None})
    assert esp.accepted_message_id(
        get_connection(), delivery_id=1, address="alice@example.org", since=BEFORE
    )
    assert client.stats()["lookups"] == 2
    with pytest.raises(ValueError, match="4xx or 5xx"):
        postmark.fail_lookups(200)
