"""A campaign manager writes a newsletter with the block composer in Chromium, and tests it.

Compose from blocks, reorder two, insert a merge field from the menu, see the
phone preview, fix what the accessibility check finds (an image without alt
text), and test-send: the message holds every block in order, as a responsive
email (a media query, inlined styles) with the merge field filled in. The
page runs under the admin's Content-Security-Policy without a violation.
"""

import re
import zlib

import pytest
from django.core import mail
from playwright.sync_api import expect

from mailings.models import Mailing

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _png(width=60, height=30):
    """A small real PNG (a flat colour), as staff would upload."""
    import struct

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\x20\x60\x90" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _log_in(page, base, user):
    page.goto(f"{base}/admin/login/")
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill("pw")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/admin/")


def test_compose_reorder_merge_preview_fix_and_test_send(browser_page, campaign_user, tmp_path):
    page, base = browser_page.page, browser_page.base_url
    page.on("dialog", lambda dialog: dialog.accept())
    image = tmp_path / "vigil.png"
    image.write_bytes(_png())
    _log_in(page, base, campaign_user)

    page.goto(f"{base}/admin/mailings/mailing/add/")
    page.get_by_label("Internal name").fill("Sudan appeal")
    page.get_by_label("Subject").fill("Sudan: what the UK must do now")
    page.get_by_label("Preheader").fill("Eighteen months of siege, and three things the UK can do.")
    for kind in ("heading", "text", "image", "button"):
        page.locator(f".rc-add[data-type={kind}]").click()
    blocks = page.locator(".rc-block")
    blocks.nth(0).get_by_label("Heading", exact=True).fill("Stand with Sudan")

    # Rich text, with the first name inserted from the menu (fallback "friend").
    blocks.nth(1).locator(".ProseMirror").click()
    page.keyboard.type("Dear ")
    blocks.nth(1).get_by_text("Insert merge field").click()
    blocks.nth(1).get_by_role("button", name="First name").click()
    # The editor takes the focus back on the next frame: type once it has.
    expect(blocks.nth(1).locator(".ProseMirror")).to_be_focused()
    page.keyboard.type(", the people of El Fasher have lived under siege for eighteen months.")
    page.keyboard.press("Enter")
    page.keyboard.type("The UK leads on Sudan at the UN Security Council, and can act.")

    blocks.nth(2).locator("input[type=file]").set_input_files(image)
    page.get_by_text("Uploaded.").wait_for()
    blocks.nth(3).get_by_label("Button text", exact=True).fill("Write to your MP")
    blocks.nth(3).get_by_label("Link", exact=True).fill("https://example.org/write")

    # Reorder: the button is dragged above the image by its handle; the move
    # buttons, for keyboard users, take the image up and back down again.
    def order():
        return page.locator(".rc-block").evaluate_all("blocks => blocks.map(b => b.dataset.type)")

    blocks.nth(3).locator(".rc-handle").drag_to(blocks.nth(2), target_position={"x": 60, "y": 5})
    assert order() == ["heading", "text", "button", "image"]
    page.get_by_role("button", name="Move Image block up").click()
    assert order() == ["heading", "text", "image", "button"]
    page.get_by_role("button", name="Move Image block down").click()
    assert order() == ["heading", "text", "button", "image"]

    page.get_by_role("button", name="Save and continue editing").click()
    page.wait_for_load_state("networkidle")
    mailing = Mailing.objects.get(name="Sudan appeal")
    assert [block["type"] for block in mailing.blocks] == ["heading", "text", "button", "image"]
    assert '{{ first_name|default:"friend" }}' in mailing.blocks[1]["html"]

    # The check names the image without alt text and leads to it.
    problems = page.locator(".rally-checks li.blocking")
    assert "no alt text" in problems.first.inner_text()
    problems.first.get_by_role("link", name="Go to the block").click()
    image_block = page.locator(".rc-block.rc-flagged")
    assert image_block.get_attribute("data-type") == "image"
    image_block.get_by_label("Alt text").fill("Candles at a vigil for Sudan in London")
    page.get_by_role("button", name="Save and continue editing").click()
    page.wait_for_load_state("networkidle")
    assert page.locator(".rally-checks li.blocking").count() == 0

    # The preview: desktop and phone frames of the real email, the phone one narrow.
    page.get_by_role("link", name="Preview and test send").click()
    phone = page.frame_locator(".rally-device.phone iframe")
    assert "Dear Sam," in phone.locator("body").inner_text()
    assert page.locator(".rally-device.phone iframe").bounding_box()["width"] < 420
    page.get_by_text("Plain-text version").click()
    assert "Dear Sam," in page.locator("#plain-text pre").inner_text()

    page.get_by_role("button", name="Send me a test").click()
    page.get_by_text("Test sent to").wait_for()
    assert browser_page.errors == []

    (message,) = mail.outbox
    html = message.alternatives[0][0]
    order = ["Stand with Sudan", "Dear Sam,", "Write to your MP", "Candles at a vigil"]
    positions = [html.find(text) for text in order]
    assert -1 not in positions and positions == sorted(positions), positions
    assert "@media" in html
    assert re.search(r'<td[^>]+style="[^"]*font-size', html)
    assert "{{" not in html
    assert message.subject.startswith("[Test] ")
