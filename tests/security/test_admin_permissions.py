"""Who may open and use every admin page and action, role by role.

The pages are discovered, not listed: every URL of every ModelAdmin in
admin.site._registry (changelists, add, change, delete, history and each
custom view) and every bulk action. Each must have an expectation in the
tables below, so a page added later without one fails
test_every_admin_page_has_an_expectation.

The boundaries (docs: crm/roles.py): Membership staff look after supporters,
segments, imports and exports, and may neither send nor erase; Campaign
managers do everything with mailings and only read supporters; superusers do
everything; staff without a role and anonymous visitors do nothing. A
refused page answers 403 (or 405 for POST-only buttons), or sends an anonymous
visitor to the login page; a refused POST changes nothing and sends no email.
"""

import pytest
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib import admin
from django.contrib.auth.models import Group
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, RequestFactory
from django_otp.plugins.otp_totp.models import TOTPDevice

from crm import services
from crm.models import AuditEvent, ConsentRecord, Segment, Suppression, Tag
from mailings.models import Delivery, EmailTemplate
from tests.factories import DeliveryFactory, MailingFactory, SegmentFactory, SupporterFactory
from tests.security.conftest import changed_tables, database_state

pytestmark = pytest.mark.django_db

SUPERUSER, MEMBERSHIP, CAMPAIGN, STAFF, ANONYMOUS = (
    "superuser",
    "membership staff",
    "campaign manager",
    "staff without a role",
    "anonymous",
)
ROLES = [SUPERUSER, MEMBERSHIP, CAMPAIGN, STAFF, ANONYMOUS]
NOBODY = frozenset()
SU = frozenset({SUPERUSER})
M = frozenset({SUPERUSER, MEMBERSHIP})
C = frozenset({SUPERUSER, CAMPAIGN})
EVERY_ROLE = frozenset({SUPERUSER, MEMBERSHIP, CAMPAIGN})

# What each role may do with each model's standard pages: v(iew), a(dd),
# c(hange), d(elete). Some models are append-only or read-only for everyone,
# superusers included (consent history, audit trail, deliveries, batches).
MODEL_ACCESS = {
    "auth.group": {SUPERUSER: "vacd"},
    "auth.user": {SUPERUSER: "vacd"},
    "crm.supporter": {SUPERUSER: "vacd", MEMBERSHIP: "vac", CAMPAIGN: "v"},
    "crm.segment": {SUPERUSER: "vacd", MEMBERSHIP: "vacd", CAMPAIGN: "v"},
    "crm.campaigninterest": {SUPERUSER: "vacd", MEMBERSHIP: "v", CAMPAIGN: "v"},
    "crm.partnerorganisation": {SUPERUSER: "vacd", MEMBERSHIP: "vc", CAMPAIGN: "v"},
    "crm.tag": {SUPERUSER: "vacd", MEMBERSHIP: "vac", CAMPAIGN: "v"},
    "crm.suppression": {SUPERUSER: "vad", MEMBERSHIP: "va"},
    "crm.consentrecord": {SUPERUSER: "v", MEMBERSHIP: "v"},
    "crm.auditevent": {SUPERUSER: "v", MEMBERSHIP: "v"},
    "crm.importbatch": {SUPERUSER: "vc", MEMBERSHIP: "vc"},
    "mailings.mailing": {SUPERUSER: "vacd", MEMBERSHIP: "v", CAMPAIGN: "vacd"},
    "mailings.delivery": {SUPERUSER: "v", CAMPAIGN: "v"},
    # The newsletters' header and footer, and templates to start from.
    "mailings.emailtemplate": {SUPERUSER: "vacd", CAMPAIGN: "vacd"},
    # Integrations (project.api): keys are revoked, never deleted; deliveries are a log.
    "api.apikey": {SUPERUSER: "vac", CAMPAIGN: "vac"},
    "api.webhookendpoint": {SUPERUSER: "vacd", CAMPAIGN: "vac"},
    "api.webhookdelivery": {SUPERUSER: "v", CAMPAIGN: "v"},
    # The staff login (project.staff_login): lockouts and two-factor devices.
    "axes.accessattempt": {SUPERUSER: "vcd"},
    "axes.accesslog": {SUPERUSER: "vcd"},
    "axes.accessfailurelog": {SUPERUSER: "vcd"},
    "otp_totp.totpdevice": {SUPERUSER: "vacd"},
    # Action pages: campaign managers write them; everyone reads who signed; a
    # partner's opt-out file is applied (and its receipt read) by membership staff.
    "actions.action": {SUPERUSER: "vacd", MEMBERSHIP: "v", CAMPAIGN: "vacd"},
    "actions.signature": {SUPERUSER: "v", MEMBERSHIP: "v", CAMPAIGN: "v"},
    "crm.partneroptoutfile": {SUPERUSER: "va", MEMBERSHIP: "va"},
    # Journeys: campaign managers build and run them (a journey that ran is never deleted).
    "journeys.journey": {SUPERUSER: "vacd", CAMPAIGN: "vacd"},
}

# Custom pages: (who may GET, who may POST); POST None for pages that only show
# or download. GET NOBODY: a POST-only button, refused (403/405) to every GET.
CUSTOM = {
    "crm_supporter_export_data": (M, None),
    "crm_supporter_erase": (SU, SU),
    "crm_supporter_revoke_links": (NOBODY, M),
    "crm_supporter_import": (M, M),
    "crm_supporter_import_template": (M, None),
    "crm_supporter_process_import": (M, M),
    "crm_supporter_export": (M, M),
    "crm_supporter_simple_history": (EVERY_ROLE, M),
    "crm_partnerorganisation_sync_export": (M, M),
    "crm_importbatch_progress": (M, None),
    "crm_importbatch_revert": (M, M),
    "crm_importbatch_report": (M, None),
    "crm_importbatch_preview": (M, None),
    "mailings_mailing_preview": (EVERY_ROLE, None),
    "mailings_mailing_test": (C, C),
    "mailings_mailing_send": (C, C),
    "mailings_mailing_schedule": (C, C),
    "mailings_mailing_report": (EVERY_ROLE, None),
    # The report's lists of people: read by anyone who reads supporters; made into
    # a segment by who may add segments; downloaded by who may export supporters.
    "mailings_mailing_report_people": (EVERY_ROLE, None),
    "mailings_mailing_report_segment": (NOBODY, M),
    "mailings_mailing_report_export": (NOBODY, M),
    "mailings_mailing_progress": (EVERY_ROLE, None),
    # The composer: the preview's frames, image upload, the check's override
    # (who may send) and saving a newsletter as a template.
    "mailings_mailing_preview_frame": (EVERY_ROLE, None),
    "mailings_composer_upload": (NOBODY, C),
    "mailings_mailing_override_checks": (NOBODY, C),
    "mailings_mailing_save_template": (NOBODY, C),
    "auth_user_password_change": (SU, SU),
    # Nobody may read a device's secret (OTP_ADMIN_HIDE_SENSITIVE_DATA).
    "otp_totp_totpdevice_config": (NOBODY, None),
    "otp_totp_totpdevice_qrcode": (NOBODY, None),
    # An action's signatures for its target (names and postcodes), and a segment of
    # its signers (who may add segments); a partner opt-out receipt's unmatched rows.
    "actions_action_target_csv": (EVERY_ROLE, None),
    "actions_action_segment": (M, M),
    "crm_partneroptoutfile_unmatched": (M, None),
    # A journey's report, its buttons (start, pause, new version...) and moving people.
    "journeys_journey_report": (C, None),
    "journeys_journey_action": (NOBODY, C),
    "journeys_journey_move": (NOBODY, C),
}
# /admin/mailings/mailing/<pk>/do/<action>/: POST-only buttons.
MAILING_BUTTONS = {
    "pause": C,
    "resume": C,
    "cancel": C,
    "unschedule": C,
    "resend-unknown": C,
    "duplicate": C,
    "no-such-action": NOBODY,
}
# Bulk actions on each changelist, by role.
ACTIONS = {
    "crm.supporter": {
        SUPERUSER: {
            "delete_selected",
            "export_admin_action",
            "subscribe_action",
            "unsubscribe_action",
            "add_to_segment_action",
            "remove_from_segment_action",
        },
        MEMBERSHIP: {
            "export_admin_action",
            "subscribe_action",
            "unsubscribe_action",
            "add_to_segment_action",
            "remove_from_segment_action",
        },
    },
    "crm.segment": {SUPERUSER: {"delete_selected"}, MEMBERSHIP: {"delete_selected"}},
    "mailings.mailing": {SUPERUSER: {"delete_selected"}, CAMPAIGN: {"delete_selected"}},
    "crm.campaigninterest": {SUPERUSER: {"delete_selected"}},
    "crm.partnerorganisation": {SUPERUSER: {"delete_selected"}},
    "crm.tag": {SUPERUSER: {"delete_selected"}},
    "crm.suppression": {SUPERUSER: {"delete_selected"}},
    "auth.user": {SUPERUSER: {"delete_selected"}},
    "auth.group": {SUPERUSER: {"delete_selected"}},
    "crm.consentrecord": {},
    "crm.auditevent": {},
    "crm.importbatch": {},
    "mailings.delivery": {},
    "mailings.emailtemplate": {SUPERUSER: {"delete_selected"}, CAMPAIGN: {"delete_selected"}},
    "api.apikey": {SUPERUSER: {"revoke"}, CAMPAIGN: {"revoke"}},
    "api.webhookendpoint": {
        SUPERUSER: {"delete_selected", "resume", "new_secret"},
        CAMPAIGN: {"resume", "new_secret"},
    },
    "api.webhookdelivery": {},
    "axes.accessattempt": {SUPERUSER: {"delete_selected", "cleanup_expired_attempts"}},
    "axes.accesslog": {SUPERUSER: {"delete_selected"}},
    "axes.accessfailurelog": {SUPERUSER: {"delete_selected"}},
    "otp_totp.totpdevice": {SUPERUSER: {"delete_selected"}},
    "actions.action": {SUPERUSER: {"delete_selected"}, CAMPAIGN: {"delete_selected"}},
    "actions.signature": {},
    "crm.partneroptoutfile": {},
    "journeys.journey": {},
}

STANDARD = {
    "changelist": ("v", "v"),  # (letter needed to GET, letter needed to POST)
    "add": ("a", "a"),
    "change": ("v", "c"),
    "history": ("v", None),
    "delete": ("d", "d"),
}

# The POST each refused role tries: what would change something if it were allowed.
PAYLOADS = {
    "crm_supporter_import": lambda world: {
        "resource": "0",
        "partner": world["partner"].pk,
        "format": "",
        "encoding": "auto",
        "import_file": SimpleUploadedFile("list.csv", b"Email\nnew@example.org\n"),
    },
    "crm_supporter_process_import": lambda world: {"batch": world["previewed"].pk},
    "crm_supporter_export": lambda world: {"format": "0", "resource": "0"},
    "crm_partnerorganisation_sync_export": lambda world: {"file_format": "csv"},
    "mailings_mailing_test": lambda world: {"also_to": "someone@example.org"},
    "mailings_mailing_schedule": lambda world: {"send_at": "2031-05-01T09:00"},
    "auth_user_password_change": lambda world: {
        "password1": "A-new-pass-1234",
        "password2": "A-new-pass-1234",
    },
    # A complete, valid supporter form: the history page saves it as a revert.
    "crm_supporter_simple_history": lambda world: {
        "email": "takeover@example.org",
        "first_name": "Mallory",
        "last_name": "",
        "postcode": "",
        "country": "GB",
        "phone": "",
        "organisation": "",
        "source": world["supporter"].source,
        "partner": "",
        "notes": "",
    },
    "delete": lambda world: {"post": "yes"},
    "change": lambda world: {"name": "Changed", "email": "changed@example.org"},
    "add": lambda world: {"name": "Added", "slug": "added", "email": "added@example.org"},
}


@pytest.fixture
def world(
    supporter, interest, other_interest, partner, partner_list, newsletter, superuser,
    membership_user, campaign_user, django_user_model,
):  # fmt: skip
    """One of everything the admin shows, and a user for each role."""
    nobody = django_user_model.objects.create_user(username="nora", password="pw", is_staff=True)
    done = partner_list("Email\nann@example.org\n", confirm=True, interests=[interest]).batch
    previewed = partner_list("Email\nbea@example.org\n", interests=[interest]).batch
    services.suppression_add(email="gone@example.org", reason=Suppression.Reason.STAFF, note="")
    tag = Tag.objects.create(name="volunteer")
    reader = SupporterFactory(email="reader@example.org", subscribed_to=[interest])
    sent = MailingFactory(name="Sent one", interests=[interest])
    delivery = DeliveryFactory(mailing=sent, supporter=reader, status=Delivery.Status.SENT)
    objects = {
        "auth.group": Group.objects.get(name="Membership staff"),
        "auth.user": nobody,
        "crm.supporter": supporter,
        "crm.segment": SegmentFactory(kind=Segment.Kind.STATIC),
        "crm.campaigninterest": other_interest,
        "crm.partnerorganisation": partner,
        "crm.tag": tag,
        "crm.suppression": Suppression.objects.first(),
        "crm.consentrecord": ConsentRecord.objects.first(),
        "crm.auditevent": AuditEvent.objects.first(),
        "crm.importbatch": done,
        "mailings.mailing": newsletter,
        "mailings.delivery": delivery,
        "mailings.emailtemplate": EmailTemplate.objects.create(name="House style"),
        **_api_objects(),
        "axes.accessattempt": AccessAttempt.objects.create(
            username="nora", ip_address="192.0.2.1", failures_since_start=1
        ),
        "axes.accesslog": AccessLog.objects.create(username="nora", ip_address="192.0.2.1"),
        "axes.accessfailurelog": AccessFailureLog.objects.create(
            username="nora", ip_address="192.0.2.1"
        ),
        "otp_totp.totpdevice": TOTPDevice.objects.create(user=nobody, name="Phone"),
        **_action_objects(partner),
        "journeys.journey": _journey(interest),
    }
    assert all(objects.values()), objects
    users = {
        SUPERUSER: superuser,
        MEMBERSHIP: membership_user,
        CAMPAIGN: campaign_user,
        STAFF: nobody,
        ANONYMOUS: None,
    }
    return {
        "objects": objects,
        "users": users,
        "partner": partner,
        "previewed": previewed,
        "done": done,
        "supporter": supporter,
        "mailing": newsletter,
        "interest": interest,
    }


def _journey(interest):
    from mailings.journeys.models import Journey

    journey = Journey.objects.create(name="Welcome series")
    journey.interests.set([interest])
    return journey


def _action_objects(partner):
    from crm.services import partner_optouts_apply
    from mailings.actions.models import Action
    from mailings.actions.services import action_sign

    signed = Action.objects.create(title="Signed", slug="signed", status=Action.Status.OPEN)
    return {
        "actions.action": Action.objects.create(title="Draft", slug="draft"),
        "actions.signature": action_sign(action=signed, email="signer@example.org"),
        "crm.partneroptoutfile": partner_optouts_apply(partner=partner, rows=["x@example.org"]),
    }


def admin_pages(world):
    """Yield (label, url name, url, GET roles, POST roles) for every admin page."""
    for model, model_admin in admin.site._registry.items():
        label = model._meta.label_lower
        prefix = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        obj = world["objects"][label]
        access = MODEL_ACCESS[label]
        for pattern in model_admin.get_urls():
            route = str(pattern.pattern)
            name = pattern.name
            if name is None:  # <path:object_id>/ redirects to the change page
                kind = "change"
            else:
                kind = name.removeprefix(f"{model._meta.app_label}_{model._meta.model_name}_")
            pk = obj.pk
            if name == "crm_importbatch_preview":
                pk = world["previewed"].pk
            if name == "crm_supporter_simple_history":
                history = obj.history.first()
                yield label, name, f"{prefix}{obj.pk}/history/{history.history_id}/", *CUSTOM[name]
                continue
            path = (
                route.replace("<path:object_id>", str(pk))
                .replace("<int:pk>", str(pk))
                .replace("<id>", str(pk))
            )
            if "<slug:action>" in path:
                for action, allowed in MAILING_BUTTONS.items():
                    yield (
                        label,
                        f"{name}:{action}",
                        prefix + path.replace("<slug:action>", action),
                        NOBODY,
                        allowed,
                    )
                continue
            if name in CUSTOM:
                yield label, name, prefix + path, *CUSTOM[name]
                continue
            get_letter, post_letter = STANDARD[kind]
            get_roles = frozenset(r for r, letters in access.items() if get_letter in letters)
            if kind in ("change", "history"):  # view or change permission shows the page
                get_roles = frozenset(
                    r for r, letters in access.items() if set(letters) & {"v", "c"}
                )
            post_roles = (
                None
                if post_letter is None or name is None
                else frozenset(r for r, letters in access.items() if post_letter in letters)
            )
            yield label, name or f"{label} object", prefix + path, get_roles, post_roles


def client_for(world, role):
    client = Client(raise_request_exception=False)
    if world["users"][role] is not None:
        client.force_login(world["users"][role])
    return client


def outcome_of_get(client, url):
    """Follow redirects (not to the login page); return the final status or "login"."""
    response = client.get(url)
    for _ in range(3):
        if response.status_code != 302:
            break
        if response.url.startswith("/admin/login/"):
            return "login"
        response = client.get(response.url)
    return response.status_code


def test_every_admin_page_has_an_expectation(world):
    """A page or model added without a line in the tables above fails here."""
    names = {pattern.name for ma in admin.site._registry.values() for pattern in ma.get_urls()}
    known = set(CUSTOM) | {"mailings_mailing_action"}
    standard = {
        name
        for name in names
        if name and name.rsplit("_", 1)[-1] in ("changelist", "add", "change", "history", "delete")
    }
    assert names - known - standard - {None} == set()
    labels = {model._meta.label_lower for model in admin.site._registry}
    assert labels == set(MODEL_ACCESS) == set(ACTIONS)


@pytest.mark.parametrize("role", ROLES)
def test_each_role_opens_exactly_the_pages_it_should(world, role):
    client = client_for(world, role)
    wrong = []
    checked = 0
    for _label, name, url, get_roles, _post_roles in admin_pages(world):
        outcome = outcome_of_get(client, url)
        checked += 1
        if role == ANONYMOUS:
            expected_ok = outcome == "login"
        elif role in get_roles:
            expected_ok = outcome == 200
        else:
            expected_ok = outcome in (403, 405)
        if not expected_ok:
            wrong.append(f"{name} GET {url} -> {outcome}")

    assert checked > 80
    assert wrong == []


@pytest.mark.parametrize("role", ROLES)
def test_each_refused_post_is_403_and_changes_nothing(world, role):
    client = client_for(world, role)
    before = database_state()
    wrong = []
    tried = 0
    for _label, name, url, _get_roles, post_roles in admin_pages(world):
        if post_roles is None or role in post_roles:
            continue
        kind = name.rsplit("_", 1)[-1] if name else ""
        payload = PAYLOADS.get(name) or PAYLOADS.get(kind) or (lambda world: {})
        response = client.post(url, payload(world))
        tried += 1
        if role == ANONYMOUS:
            ok = response.status_code == 302 and response.url.startswith("/admin/login/")
        else:
            ok = response.status_code in (403, 405)
        if not ok:
            wrong.append(f"{name} POST {url} -> {response.status_code}")
        changed = changed_tables(before, database_state())
        if changed:
            wrong.append(f"{name} POST {url} changed {changed}")
            before = database_state()

    assert tried > (5 if role == SUPERUSER else 20)
    assert wrong == []
    assert mail.outbox == []


# The POSTs the right roles make, each on a fresh database: the button works.
ALLOWED_POSTS = [
    ("crm_supporter_erase", SUPERUSER),
    ("crm_supporter_revoke_links", SUPERUSER),
    ("crm_supporter_revoke_links", MEMBERSHIP),
    ("crm_supporter_import", MEMBERSHIP),
    ("crm_supporter_process_import", MEMBERSHIP),
    ("crm_supporter_process_import", SUPERUSER),
    ("crm_partnerorganisation_sync_export", MEMBERSHIP),
    ("crm_importbatch_revert", MEMBERSHIP),
    ("mailings_mailing_test", CAMPAIGN),
    ("mailings_mailing_schedule", CAMPAIGN),
    ("mailings_mailing_send", CAMPAIGN),
    ("mailings_mailing_send", SUPERUSER),
    ("mailings_mailing_action:duplicate", CAMPAIGN),
    ("mailings_mailing_action:cancel", CAMPAIGN),
    ("auth_user_password_change", SUPERUSER),
    ("actions_action_segment", MEMBERSHIP),
]


@pytest.mark.parametrize(("page", "role"), ALLOWED_POSTS)
def test_the_right_role_can_press_the_button(world, page, role, django_capture_on_commit_callbacks):
    url = next(url for _label, name, url, *_ in admin_pages(world) if name == page)
    payload = PAYLOADS.get(page.split(":")[0], lambda world: {})(world)
    before = database_state()

    with django_capture_on_commit_callbacks(execute=False):
        response = client_for(world, role).post(url, payload)

    assert response.status_code in (200, 302)
    assert not (response.status_code == 302 and response.url.startswith("/admin/login/"))
    if page != "crm_supporter_import":  # the preview's answer is a page, its batch the change
        assert changed_tables(before, database_state()) != [] or page.endswith("sync_export")


@pytest.mark.parametrize("role", [SUPERUSER, MEMBERSHIP, CAMPAIGN, STAFF])
def test_each_role_is_offered_exactly_its_bulk_actions(world, role):
    request = RequestFactory().get("/admin/")
    request.user = world["users"][role]
    wrong = {}
    for model, model_admin in admin.site._registry.items():
        label = model._meta.label_lower
        offered = (
            set(model_admin.get_actions(request))
            if model_admin.has_view_or_change_permission(request)
            else set()
        )
        expected = ACTIONS[label].get(role, set())
        if offered != expected:
            wrong[label] = sorted(offered)
    assert wrong == {}


@pytest.mark.parametrize("role", [MEMBERSHIP, CAMPAIGN, STAFF, ANONYMOUS])
def test_bulk_actions_a_role_is_not_offered_change_nothing_when_posted(world, role):
    """Posting an action by name, as a forged form would, is ignored or refused."""
    client = client_for(world, role)
    segment = SegmentFactory(kind=Segment.Kind.STATIC)
    before = database_state()
    wrong = []
    for model, model_admin in admin.site._registry.items():
        label = model._meta.label_lower
        allowed = ACTIONS[label].get(role, set())
        every = set(ACTIONS[label].get(SUPERUSER, set())) | {"delete_selected"}
        obj = world["objects"][label]
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        for action in sorted(every - allowed):
            response = client.post(
                url,
                {
                    "action": action,
                    "_selected_action": [obj.pk],
                    "index": "0",
                    "post": "yes",
                    "apply": "1",
                    "interest": world["interest"].pk,
                    "segment": segment.pk,
                    "format": "0",
                },
            )
            if response.status_code == 302 and response.url.startswith("/admin/login/"):
                continue
            if response.status_code not in (200, 302, 403):
                wrong.append(f"{label} {action} -> {response.status_code}")
            changed = changed_tables(before, database_state())
            if changed:
                wrong.append(f"{label} {action} changed {changed}")
                before = database_state()
            if response.status_code == 200 and response.get("Content-Disposition"):
                wrong.append(f"{label} {action} downloaded an export")

    assert wrong == []


def test_reverting_a_supporter_from_history_needs_change_permission(world):
    """The history page of a supporter saves an old version on POST; reading it is not enough."""
    alice = world["supporter"]
    url = f"/admin/crm/supporter/{alice.pk}/history/{alice.history.first().history_id}/"
    payload = PAYLOADS["crm_supporter_simple_history"](world)

    refused = client_for(world, CAMPAIGN).post(url, payload)
    alice.refresh_from_db()
    assert refused.status_code == 403
    assert alice.email == "alice@example.org"

    allowed = client_for(world, MEMBERSHIP).post(url, payload)
    alice.refresh_from_db()
    assert allowed.status_code == 302
    assert alice.first_name == "Mallory"


def _api_objects():
    """An API key, a webhook endpoint and one of its deliveries (project.api)."""
    from project.api.keys import api_key_create
    from project.api.models import Event, WebhookDelivery
    from project.api.webhooks import webhook_endpoint_create

    hook = webhook_endpoint_create(name="Hook", url="https://example.org/h", events=["x"])
    delivery = WebhookDelivery.objects.create(
        endpoint=hook, event=Event.SUBSCRIBED, event_id="consent-1", occurred_at=hook.created_at
    )
    key, _ = api_key_create(name="Partner CRM", scopes=["supporters:read"])
    return {"api.apikey": key, "api.webhookendpoint": hook, "api.webhookdelivery": delivery}
