"""The composer in the mailing's admin page: HTML blocks, the check override, templates."""

import json
import re

import pytest
from django.contrib.auth.models import Permission

from crm.models import AuditEvent
from mailings.models import EmailTemplate, Mailing
from tests.factories import MailingFactory

pytestmark = pytest.mark.django_db

RAW = {"id": "raw1", "type": "html", "html": "<table><tr><td>Old layout</td></tr></table>"}
TEXT = {"id": "t1", "type": "text", "html": '<p>Dear {{ first_name|default:"friend" }},</p>'}
NO_ALT = {"id": "pic1", "type": "image", "src": "https://example.org/vigil.png", "alt": "",
          "width": 600}  # fmt: skip


def _inline_management(html):
    """Return the hidden management fields of the page's inline formsets, as posted back."""
    fields = {}
    for name, value in re.findall(
        r'<input type="hidden" name="([\w-]+-(?:TOTAL|INITIAL|MIN_NUM|MAX_NUM)_FORMS)"'
        r'[^>]*?value="(\d*)"',
        html,
    ):
        fields[name] = value
    return fields


def _post_mailing(client, url, blocks, **extra):
    page = client.get(url)
    assert page.status_code == 200
    data = {
        "name": "Sudan briefing",
        "subject": "What the UK must do",
        "preheader": "Three asks",
        "blocks": json.dumps(blocks),
        "body_text": "",
        **_inline_management(page.content.decode()),
        **extra,
    }
    return client.post(url, data)


def _blocks_in_page(response):
    match = re.search(r'name="blocks" id="id_blocks" value="([^"]*)"', response.content.decode())
    assert match, "the composer's hidden input is on the page"
    return json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def test_html_block_refused_without_the_permission(client, campaign_user):
    """A campaign manager without edit_html_block cannot add an HTML block: the form says why."""
    client.force_login(campaign_user)
    response = _post_mailing(client, "/admin/mailings/mailing/add/", [TEXT, RAW])
    assert response.status_code == 200
    assert "only staff allowed to edit raw HTML" in response.content.decode()
    assert not Mailing.objects.filter(name="Sudan briefing").exists()


def test_html_block_kept_and_moved_but_not_changed_without_the_permission(client, campaign_user):
    """An existing HTML block may be moved; changing its HTML is refused and nothing is lost."""
    mailing = MailingFactory(blocks=[RAW, TEXT])
    client.force_login(campaign_user)
    url = f"/admin/mailings/mailing/{mailing.pk}/change/"

    response = _post_mailing(client, url, [TEXT, RAW])
    assert response.status_code == 302
    mailing.refresh_from_db()
    assert [block["id"] for block in mailing.blocks] == ["t1", "raw1"]

    changed = {**RAW, "html": "<script>alert(1)</script>"}
    response = _post_mailing(client, url, [TEXT, changed])
    assert response.status_code == 200
    assert "only staff allowed to edit raw HTML" in response.content.decode()
    mailing.refresh_from_db()
    assert "Old layout" in mailing.blocks[1]["html"]
    assert "script" not in mailing.blocks[1]["html"]


def test_html_block_allowed_with_the_permission(client, campaign_user):
    """Given mailings.edit_html_block, staff can write an HTML block, and see its button."""
    campaign_user.user_permissions.add(Permission.objects.get(codename="edit_html_block"))
    client.force_login(campaign_user)
    page = client.get("/admin/mailings/mailing/add/")
    assert "&quot;allowHtml&quot;: true" in page.content.decode()
    response = _post_mailing(client, "/admin/mailings/mailing/add/", [RAW])
    assert response.status_code == 302
    assert "Old layout" in Mailing.objects.get(name="Sudan briefing").blocks[0]["html"]


def test_page_lists_the_checks_problems_with_a_link_to_each_block(client, campaign_user):
    """An image without alt text is listed as blocking sending, linked to its block."""
    mailing = MailingFactory(blocks=[TEXT, NO_ALT])
    client.force_login(campaign_user)
    page = client.get(f"/admin/mailings/mailing/{mailing.pk}/change/").content.decode()
    assert "Fix before sending:" in page
    assert "no alt text" in page
    assert f'href="/admin/mailings/mailing/{mailing.pk}/change/#block-pic1"' in page
    assert "Allow sending anyway" in page


def test_override_needs_a_campaign_manager_and_is_audited(client, membership_user, campaign_user):
    """Membership staff cannot allow sending despite the check; a campaign manager can, audited."""
    mailing = MailingFactory(blocks=[TEXT, NO_ALT])
    url = f"/admin/mailings/mailing/{mailing.pk}/checks/override/"

    client.force_login(membership_user)
    assert client.post(url).status_code == 403
    mailing.refresh_from_db()
    assert mailing.checks_overridden_at is None

    client.force_login(campaign_user)
    assert client.get(url).status_code == 405
    assert client.post(url).status_code == 302
    mailing.refresh_from_db()
    assert mailing.checks_overridden_by == campaign_user
    event = AuditEvent.objects.get(kind=AuditEvent.Kind.CHECKS_OVERRIDDEN)
    assert event.actor == campaign_user
    page = client.get(f"/admin/mailings/mailing/{mailing.pk}/change/").content.decode()
    assert "Sending allowed despite these problems by carl" in page


def test_save_as_template_then_start_a_newsletter_from_it(client, campaign_user):
    """A newsletter saved as a template gives the next newsletter its blocks and colours."""
    house = EmailTemplate.objects.create(
        name="House style", brand_colour="#123456", is_default=True
    )
    mailing = MailingFactory(blocks=[TEXT, NO_ALT], template=house)
    client.force_login(campaign_user)

    response = client.post(
        f"/admin/mailings/mailing/{mailing.pk}/save-as-template/", {"name": "Monthly briefing"}
    )
    assert response.status_code == 302
    saved = EmailTemplate.objects.get(name="Monthly briefing")
    assert [block["id"] for block in saved.blocks] == ["t1", "pic1"]
    assert saved.brand_colour == "#123456"
    assert saved.is_default is False

    page = client.get(f"/admin/mailings/mailing/add/?template={saved.pk}")
    assert [block["type"] for block in _blocks_in_page(page)] == ["text", "image"]


def test_new_newsletter_starts_from_the_default_template(client, campaign_user):
    """With no template chosen, the add page starts from the default template and its blocks."""
    starter = [{"id": "h1", "type": "heading", "level": 1, "text": "This month"}]
    default = EmailTemplate.objects.create(name="House", is_default=True, blocks=starter)
    client.force_login(campaign_user)
    page = client.get("/admin/mailings/mailing/add/")
    assert _blocks_in_page(page) == starter
    assert re.search(
        rf'<option value="{default.pk}" selected>House</option>', page.content.decode()
    )


def test_a_second_default_template_replaces_the_first(admin_client):
    """Ticking "default" on a template unticks it on the old one, rather than failing."""
    old = EmailTemplate.objects.create(name="Old", is_default=True)
    response = admin_client.post(
        "/admin/mailings/emailtemplate/add/",
        {
            "name": "New",
            "is_default": "on",
            "brand_colour": "#0d3b4f",
            "button_colour": "#c8102e",
            "background_colour": "#f2f4f5",
            "text_colour": "#1d2a33",
            "blocks": "[]",
        },
    )
    assert response.status_code == 302
    old.refresh_from_db()
    assert old.is_default is False
    assert EmailTemplate.objects.default().name == "New"


def test_preview_frame_is_the_real_email_sandboxed(client, membership_user):
    """The preview's frame shows the compiled email, filled for the sample, runnable by nothing."""
    mailing = MailingFactory(blocks=[TEXT])
    client.force_login(membership_user)
    response = client.get(f"/admin/mailings/mailing/{mailing.pk}/preview/frame/")
    assert response.status_code == 200
    assert "Dear Sam," in response.content.decode()
    assert "@media" in response.content.decode()
    policy = response["Content-Security-Policy"]
    assert "sandbox" in policy
    assert "script-src" not in policy and "default-src 'none'" in policy
    assert "frame-ancestors 'self'" in policy
    assert response["X-Frame-Options"] == "SAMEORIGIN"
    page = client.get(f"/admin/mailings/mailing/{mailing.pk}/preview/").content.decode()
    assert page.count("<iframe") == 2
    assert page.count(" sandbox ") == 2


def test_changing_the_content_ends_an_override(client, campaign_user):
    """Sending despite the check was allowed for the content staff saw, not for what came after."""
    mailing = MailingFactory(blocks=[TEXT, NO_ALT])
    client.force_login(campaign_user)
    url = f"/admin/mailings/mailing/{mailing.pk}/change/"
    fields = {"name": mailing.name, "subject": mailing.subject, "preheader": mailing.preheader}
    _post_mailing(client, url, [TEXT, NO_ALT], **fields)
    client.post(f"/admin/mailings/mailing/{mailing.pk}/checks/override/")

    mailing.refresh_from_db()
    _post_mailing(client, url, mailing.blocks, **fields)  # saved again as it was
    mailing.refresh_from_db()
    assert mailing.checks_overridden_by == campaign_user

    _post_mailing(client, url, [*mailing.blocks, {**NO_ALT, "id": "pic2"}], **fields)
    mailing.refresh_from_db()
    assert mailing.checks_overridden_at is None
    assert mailing.checks_overridden_by is None
