"""No supporter's personal data reaches the logs.

Every logger (root at DEBUG, so django.request, celery, anymail, urllib3 and
Rally's own) is captured while supporters are imported through the admin and
the command, sent a newsletter through the ESP simulator (with a refused
address and an ESP outage on the way), bounce and complain through the
tracking webhooks, and use their links and the public forms. No record's
message, arguments, exception or extra fields holds any of their addresses,
names or postcodes.
"""

import json
import logging

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client

from crm.models import Supporter
from mailings import sending, services, throttle, tokens, tracking
from mailings.models import Delivery
from tests.security.conftest import WEBHOOK_AUTH

pytestmark = pytest.mark.django_db

# People whose details are unlike anything a log line says for other reasons.
PEOPLE = [
    ("zephyrine.quillfeather@example.org", "Zephyrine", "Quillfeather", "KY16 9AJ"),
    ("Octavian.Brackenridge@Example.org", "Octavian", "Brackenridge", "EH1 2NG"),
    ("wilhelmina+r2p@mail.example.net", "Wilhelmina", "Fairweather-Loxley", "BT7 1NN"),
    ("refused.rowanberry@example.org", "Rowanberry", "Thistlewood", "LL57 2DG"),
]
EXTRA_PEOPLE = [
    ("cassiopeia.windermere@example.com", "Cassiopeia", "Windermere", "TR1 2SJ"),
    ("barnaby.greythorne@example.com", "Barnaby", "Greythorne", "PL4 8AA"),
]
STANDARD_ATTRIBUTES = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {
    "message",
    "asctime",
}


class Everything(logging.Handler):
    """Keep every record, formatted with its exception."""

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.records = []
        self.formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")

    def emit(self, record):
        self.records.append(record)

    def texts(self):
        for record in self.records:
            yield record.name, self.formatter.format(record)
            yield record.name, repr(record.args)
            for key, value in vars(record).items():
                if key not in STANDARD_ATTRIBUTES:
                    yield record.name, f"{key}={value!r}"


@pytest.fixture
def all_logs():
    """Every logger at DEBUG into one handler, as a log shipper would see them."""
    handler = Everything()
    root = logging.getLogger()
    saved_level = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    # Loggers that do not propagate to the root get the handler directly.
    own = []
    for name in list(logging.root.manager.loggerDict):
        logger = logging.getLogger(name)
        if not logger.propagate:
            logger.addHandler(handler)
            own.append(logger)
    yield handler
    root.removeHandler(handler)
    root.setLevel(saved_level)
    for logger in own:
        logger.removeHandler(handler)


def personal_values(people):
    for email, first, last, postcode in people:
        local = email.split("@")[0]
        yield from (email, email.lower(), local, local.lower(), first, last, postcode)
        yield postcode.replace(" ", "")


def csv_of(people):
    lines = ["Email,First name,Last name,Postcode,Interests"]
    lines += [f"{email},{first},{last},{postcode},r2p" for email, first, last, postcode in people]
    return ("\n".join(lines) + "\n").encode()


def postmark(client, record_type, delivery, **fields):
    payload = {
        "RecordType": record_type,
        "MessageID": delivery.esp_message_id,
        "Metadata": {"delivery_id": str(delivery.pk)},
        "Email": delivery.supporter.email,
        "Recipient": delivery.supporter.email,
        "BouncedAt": "2026-11-05T16:33:54Z",
        "DeliveredAt": "2026-11-05T16:33:54Z",
        "Description": f"Mailbox {delivery.supporter.email} does not exist",
        "Details": f"smtp;550 5.1.1 <{delivery.supporter.email}>: Recipient address rejected",
        **fields,
    }
    return client.post(
        "/anymail/postmark/tracking/",
        data=json.dumps(payload),
        content_type="application/json",
        HTTP_AUTHORIZATION=WEBHOOK_AUTH,
    )


def test_import_send_webhooks_and_links_log_no_personal_data(
    all_logs, membership_user, campaign_user, partner, interest, newsletter, postmark_esp,
    webhook_settings, fresh_cache, tasks_run_now, tmp_path, django_capture_on_commit_callbacks,
):  # fmt: skip
    client = Client(raise_request_exception=False)
    throttle.clear()

    # Import through the admin: upload, preview, confirm.
    client.force_login(membership_user)
    preview = client.post(
        "/admin/crm/supporter/import/",
        {
            "resource": "0",
            "partner": partner.pk,
            "format": "",
            "encoding": "auto",
            "import_file": SimpleUploadedFile("partner.csv", csv_of(PEOPLE)),
        },
    )
    batch = preview.context["result"].batch
    assert (
        client.post("/admin/crm/supporter/process_import/", {"batch": batch.pk}).status_code == 302
    )
    # A file with a broken row too: row errors name rows, not people.
    client.post(
        "/admin/crm/supporter/import/",
        {
            "resource": "0",
            "partner": partner.pk,
            "format": "",
            "encoding": "auto",
            "import_file": SimpleUploadedFile(
                "broken.csv", csv_of(PEOPLE) + b"not-an-address,Zephyrine,,,r2p\n"
            ),
        },
    )
    # Import through the command.
    path = tmp_path / "more.csv"
    path.write_bytes(csv_of(EXTRA_PEOPLE))
    call_command("import_supporters", str(path), "--partner", partner.slug, "-v", "2")
    assert Supporter.objects.count() == len(PEOPLE) + len(EXTRA_PEOPLE)

    # Send through the ESP simulator: one address refused, one outage on the way.
    postmark_esp.set_faults(invalid=[PEOPLE[3][0]])
    postmark_esp.fail_next(1, status=503)
    with django_capture_on_commit_callbacks(execute=False):
        services.mailing_send_now(mailing=newsletter, actor=campaign_user)
    services.mailing_start(mailing_id=newsletter.pk)
    for _ in range(3):
        sending.mailing_send_batches(mailing_id=newsletter.pk)
    sent = Delivery.objects.filter(mailing=newsletter).exclude(esp_message_id="")
    assert sent.count() >= 3

    # Tracking webhooks: a delivery, a bounce, a complaint, junk, a wrong password.
    first, second, third = sent.select_related("supporter")[:3]
    webhook = Client(raise_request_exception=False)
    assert postmark(webhook, "Delivery", first).status_code == 200
    assert postmark(webhook, "Bounce", second, Type="HardBounce", ID=1).status_code == 200
    complaint = postmark(webhook, "SpamComplaint", third, Type="SpamComplaint", ID=2)
    assert complaint.status_code == 200
    webhook.post("/anymail/postmark/tracking/", "{not json", content_type="application/json",
                 HTTP_AUTHORIZATION=WEBHOOK_AUTH)  # fmt: skip
    webhook.post("/anymail/postmark/tracking/", "{}", content_type="application/json")
    tracking.delivery_events_apply_pending()
    assert Supporter.objects.get(pk=second.supporter_id).status == Supporter.Status.BOUNCED

    # Supporters' own pages and the public forms.
    public = Client(raise_request_exception=False)
    alice = Supporter.objects.with_email(EXTRA_PEOPLE[0][0]).get()
    public.post("/preferences/", {"email": EXTRA_PEOPLE[0][0]})
    public.post("/preferences/", {"email": "nobody.known@example.org"})
    public.post(
        "/join/",
        {"email": EXTRA_PEOPLE[1][0], "first_name": EXTRA_PEOPLE[1][1], "interests": ["r2p"]},
    )
    link_tokens = [
        tokens.make_preferences_token(alice),
        tokens.make_unsubscribe_token(alice, newsletter),
        "not-a-token",
    ]
    public.post(f"/preferences/{link_tokens[0]}/my-data/")
    public.post(
        f"/unsubscribe/{link_tokens[1]}/",
        "List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    public.get(f"/preferences/{link_tokens[2]}/")
    public.put(f"/preferences/{link_tokens[0]}/")  # 405, logged with its path

    assert len(all_logs.records) > 20  # the capture works: there is plenty to read
    found = [
        f"{name}: {text[:200]}"
        for name, text in all_logs.texts()
        for value in personal_values(
            PEOPLE + EXTRA_PEOPLE + [("nobody.known@example.org", "", "", "")]
        )
        if value and value in text
    ]
    assert found == []
    # Nor does any link token: a logged path shows the route only.
    assert [text for _name, text in all_logs.texts() if any(t in text for t in link_tokens)] == []
    assert any("/preferences/<token>/" in text for _name, text in all_logs.texts())


def test_the_capture_finds_an_address_wherever_a_record_holds_it(all_logs):
    """The search above would see an address in a message, its arguments or extra fields."""
    email = PEOPLE[0][0]
    logging.getLogger("celery.worker").info("Sending to %s", email)
    logging.getLogger("django.request").warning("Failed", extra={"recipient": email})
    try:
        raise ValueError(email)
    except ValueError:
        logging.getLogger("anymail").exception("ESP said no")

    texts = [text for _name, text in all_logs.texts()]
    assert sum(email in text for text in texts) >= 3
    assert {record.name for record in all_logs.records} == {
        "celery.worker",
        "django.request",
        "anymail",
    }
