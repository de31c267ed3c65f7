"""The public action page: text, count, form; signing by posting it, framed or not."""

import re

import pytest
from django.core import mail

from crm.models import PartnerConsent, Subscription
from mailings.actions.models import Action, Signature

pytestmark = pytest.mark.django_db


def _post(client, path, **data):
    form = {
        "email": "nadia@example.org",
        "first_name": "Nadia",
        "last_name": "Hassan",
        "postcode": "e1 6an",
        "website": "",
        **data,
    }
    return client.post(path, form)


def test_page_shows_text_count_progress_and_unticked_boxes(client, petition):
    """The page reads the action's blocks, the count towards the goal and one box per co-sponsor."""
    Signature.objects.create(action=petition, supporter=_someone("a@example.org"))
    response = client.get("/act/el-fasher/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Protect civilians in El Fasher" in page
    assert "Reports of mass killings." in page
    assert "Petition to The Foreign Secretary" in page
    assert "<strong>1</strong> signature" in page
    assert 'aria-valuenow="1"' in page and "10,000" in page
    assert "Aegis Trust may email me" in page and "https://www.aegistrust.org/privacy/" in page
    assert "Stand UK may email me" in page
    assert " checked" not in page
    csp = response["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "script-src" not in csp
    assert "<script" not in page


def test_draft_action_is_not_public(client, petition):
    """Only open and closed actions have a page."""
    Action.objects.filter(pk=petition.pk).update(status=Action.Status.DRAFT)
    assert client.get("/act/el-fasher/").status_code == 404


def test_posting_the_form_signs_and_thanks_with_share_links(client, petition, tasks_run_now):
    """A signature with no box ticked is thanked and offered share links, and nothing more."""
    response = _post(client, "/act/el-fasher/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Thank you, Nadia" in page
    assert "https://wa.me/?text=" in page and "facebook.com/sharer" in page
    assert "One more step" not in page
    assert Signature.objects.get().supporter.postcode == "E1 6AN"
    assert mail.outbox == []
    assert (
        response["Cache-Control"].startswith("max-age=0") or "no-cache" in response["Cache-Control"]
    )


def test_posting_with_opt_ins_asks_for_confirmation_then_records(
    client, petition, interest, aegis, tasks_run_now, django_capture_on_commit_callbacks
):
    """Ticked boxes are confirmed from the emailed link: GET asks, POST records."""
    with django_capture_on_commit_callbacks(execute=True):
        response = _post(client, "/act/el-fasher/", opt_in="on", partners=["aegis"])
    assert "One more step" in response.content.decode()
    (message,) = mail.outbox
    link = next(word for word in message.body.split() if "/act/confirm/" in word)
    path = link.removeprefix("https://rally.example.org")
    assert client.get(path).status_code == 200
    assert not Subscription.objects.exists()  # a mail scanner's GET changes nothing
    response = client.post(path)
    assert "confirmed" in response.content.decode()
    assert Subscription.objects.get().interest == interest
    assert PartnerConsent.objects.get().partner == aegis
    assert client.get("/act/confirm/not-a-token/").status_code == 404


def test_form_errors_keep_what_was_typed(client, petition):
    """A missing name is reported beside the field, and the typed address and ticks stay."""
    response = _post(client, "/act/el-fasher/", first_name="", partners=["aegis"])
    page = response.content.decode()
    assert "Enter your first name." in page
    assert 'value="nadia@example.org"' in page
    assert (
        'value="aegis" id="partner-aegis" aria-describedby="partner-aegis-privacy" checked' in page
    )
    assert not Signature.objects.exists()


def test_embed_page_may_be_framed_only_by_cosponsors_sites(client, petition):
    """The embed is framed by the co-sponsors' listed origins and posts back into the frame."""
    response = client.get("/act/el-fasher/embed/?source=aegis")
    csp = response["Content-Security-Policy"]
    assert (
        "frame-ancestors https://aegis.example https://stand.org.uk https://www.aegistrust.org"
        in csp
    )
    assert "X-Frame-Options" not in response
    page = response.content.decode()
    assert 'action="/act/el-fasher/embed/"' in page
    assert 'name="source" value="aegis"' in page
    assert "site-header" not in page


def test_plain_form_posted_from_a_partner_site_is_attributed(client, petition, aegis):
    """A partner's own HTML form posts cross-site with no CSRF token and names its source."""
    client = client.__class__(enforce_csrf_checks=True)
    response = _post(client, "/act/el-fasher/", source="aegis")
    assert response.status_code == 200
    signature = Signature.objects.get()
    assert signature.source_partner == aegis


def test_robots_and_floods_are_turned_away(client, petition, settings):
    """The honeypot saves nothing; too many signatures from one network get a 429 page."""
    _post(client, "/act/el-fasher/", website="http://spam.example")
    assert not Signature.objects.exists()
    settings.RALLY_ACTION_RATE_LIMIT_PER_IP = "2/h"
    _post(client, "/act/el-fasher/", email="a@example.org")
    response = _post(client, "/act/el-fasher/", email="b@example.org")
    assert response.status_code == 429
    assert "Please try again later" in response.content.decode()
    assert Signature.objects.count() == 1


def test_closed_action_shows_total_without_form(client, petition):
    """A closed action keeps its page and count, with no form, and refuses posts."""
    Action.objects.filter(pk=petition.pk).update(status=Action.Status.CLOSED)
    page = client.get("/act/el-fasher/").content.decode()
    assert "has closed" in page and "<form" not in page
    response = _post(client, "/act/el-fasher/")
    assert "has closed" in response.content.decode()
    assert not Signature.objects.exists()


def _someone(email):
    from crm.services import supporter_create

    return supporter_create(email=email)


def test_frame_ancestors_never_carries_anything_but_origins(client, petition):
    """A listed line that is not a bare origin cannot add to the page's policy."""
    from mailings.actions.models import ActionPartner

    ActionPartner.objects.filter(partner__slug="stand-uk").update(
        embed_origins="https://ok.example\nhttps://x.example; script-src *\nhttps://y.example/path"
    )
    csp = client.get("/act/el-fasher/embed/")["Content-Security-Policy"]
    assert "script-src" not in csp and "y.example" not in csp
    assert "https://ok.example" in csp


def test_confirming_needs_the_csrf_token_of_its_own_page(
    client, petition, tasks_run_now, django_capture_on_commit_callbacks
):
    """Only signing is exempt: the confirmation that records consent needs its page's token."""
    strict = client.__class__(enforce_csrf_checks=True)
    with django_capture_on_commit_callbacks(execute=True):
        _post(strict, "/act/el-fasher/", opt_in="on")
    link = next(word for word in mail.outbox[0].body.split() if "/act/confirm/" in word)
    path = link.removeprefix("https://rally.example.org")
    assert strict.post(path).status_code == 403
    assert not Subscription.objects.exists()
    page = strict.get(path).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    strict.post(path, {"csrfmiddlewaretoken": token})
    assert Subscription.objects.exists()
