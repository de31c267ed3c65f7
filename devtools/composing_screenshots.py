"""
Make the pictures of the composer guide (docs/composing.md) from the demo data.

    python -m devtools.composing_screenshots [--out docs/img/composing] [--only composer ...]

Like devtools.screenshots (whose set-up it reuses): a fresh SQLite database in
a temporary directory with the demo data and the demo superuser, the
development server on a free port, Chromium through Playwright. Staff pages
are taken 1280 px wide, the web copy and the archive 390 px wide, as on a
phone. Some pictures need a step first (open the merge-field menu, clear an
image's alt text so the check has something to say); each is described below.
"""

import argparse
import dataclasses
import io
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from devtools.screenshots import (
    CHROMIUM,
    CHROMIUM_ARGS,
    NAV_SIDEBAR_CLOSED,
    PHONE_VIEWPORT,
    ROOT,
    STAFF_VIEWPORT,
    UNSET,
    _environment,
    _free_port,
    _log_in,
    _optimise,
    _start_server,
)

DEFAULT_OUT = ROOT / "docs" / "img" / "composing"


@dataclasses.dataclass
class Picture:
    name: str  # the PNG's name, without .png
    path: str  # the page to open
    phone: bool = False
    step: Callable | None = None  # what to do on the page first
    element: str = ""  # picture only this element (CSS selector), with a margin
    max_height: int = 1600


def _box(page, locator, margin=16, height=None):
    """Return the page area of `locator` with a margin, for a clipped full-page picture."""
    box = locator.bounding_box()  # relative to the viewport
    top = page.evaluate("window.scrollY") + box["y"] - margin
    return {
        "x": max(0, box["x"] - margin),
        "y": max(0, top),
        "width": box["width"] + 2 * margin,
        "height": height or box["height"] + 2 * margin,
    }


def _block(page, kind):
    return page.locator(f".rc-block[data-type={kind}]").first


def _open_merge_menu(page):
    block = _block(page, "text")
    block.scroll_into_view_if_needed()
    block.locator("summary").click()
    page.wait_for_timeout(200)
    return _box(page, block, margin=20, height=440)


def _image_without_alt(page):
    """Clear the picture's alt text and save, so the check has a problem to show."""
    alt = _block(page, "image").get_by_label("Alt text")
    alt.fill("")
    page.get_by_role("button", name="Save and continue editing").click()
    page.wait_for_load_state("networkidle")
    return _box(page, page.locator(".rally-panel"))


def _flagged_block(page):
    """Follow the check's "Go to the block" link: the image block, marked, alt text focused."""
    page.locator(".rally-checks li.blocking a").first.click()
    page.wait_for_timeout(300)
    return _box(page, page.locator(".rc-block.rc-flagged"), margin=20)


def _restore_alt(page):
    alt = _block(page, "image").get_by_label("Alt text")
    alt.fill("An illustration of eight candles burning in a row, as at a vigil")
    page.get_by_role("button", name="Save and continue editing").click()
    page.wait_for_load_state("networkidle")


def _save_as_template(page):
    """Press "Save as template" on the newsletter, then open the list of templates."""
    page.get_by_role("button", name="Save as template").click()
    page.wait_for_load_state("networkidle")
    page.get_by_role("link", name="New newsletter from this template").wait_for()
    page.goto(page.url.split("/admin/")[0] + "/admin/mailings/emailtemplate/")
    page.wait_for_load_state("networkidle")


def pictures() -> list[Picture]:
    """Return the guide's pictures, their pages read from the demo data in the database."""
    from django.urls import reverse

    from mailings.models import EmailTemplate, Mailing

    draft = Mailing.objects.filter(status=Mailing.Status.DRAFT).order_by("pk").first()
    archived = (
        Mailing.objects.filter(status=Mailing.Status.SENT, in_archive=True).order_by("pk").first()
    )
    template = EmailTemplate.objects.default()

    def admin(name, *args):
        return reverse(f"admin:{name}", args=args)

    change = admin("mailings_mailing_change", draft.pk)
    return [
        Picture("composer", change, element=".form-row.field-blocks", max_height=1500),
        Picture("merge-fields", change, step=_open_merge_menu),
        Picture("add-block", change, element=".rc-addbar"),
        Picture("checks", change, step=_image_without_alt),
        Picture("checks-block", change, step=_flagged_block),
        Picture("fixed", change, step=_restore_alt, element=".rally-panel"),
        Picture("preview", admin("mailings_mailing_preview", draft.pk), max_height=1500),
        Picture("template", admin("mailings_emailtemplate_change", template.pk)),
        Picture("new-from-template", change, step=_save_as_template, max_height=420),
        Picture("web-copy", f"/newsletters/{archived.public_id}/", phone=True, max_height=2600),
        Picture("archive", reverse("newsletter-archive"), phone=True),
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the PNGs")
    parser.add_argument("--only", nargs="*", help="make only these pictures (by name)")
    parser.add_argument("--chromium", default=CHROMIUM, help=f"Chromium to use ({CHROMIUM})")
    options = parser.parse_args(argv)
    options.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="rally-composing-") as folder:
        port = _free_port()
        os.environ.update(_environment(Path(folder), port))
        for name in [k for k in os.environ if k.startswith("ANYMAIL_") or k in UNSET]:
            del os.environ[name]
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", interactive=False, verbosity=0)
        call_command("seed_demo", supporters=300)
        call_command("ensure_admin", stdout=io.StringIO())
        password = (Path(folder) / "var" / "admin-credentials.txt").read_text().strip()
        wanted = [p for p in pictures() if not options.only or p.name in options.only]
        from django.db import connections

        connections.close_all()
        server = _start_server(port, os.environ.copy(), Path(folder) / "server.log")
        try:
            made = _take(wanted, f"http://127.0.0.1:{port}", password, options.out, options)
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    for path in made:
        _optimise(path)
        print(f"{path} ({path.stat().st_size // 1024} KB)")
    return 0


def _take(wanted, base_url, password, out, options) -> list[Path]:
    from playwright.sync_api import sync_playwright

    made = []
    with sync_playwright() as playwright:
        # Sandboxed preview frames are painted by their own process; drawn in
        # this one, the full-page picture shows them as the page does.
        browser = playwright.chromium.launch(
            executable_path=options.chromium,
            args=[*CHROMIUM_ARGS, "--disable-features=IsolateSandboxedIframes"],
        )
        staff = browser.new_context(viewport=STAFF_VIEWPORT, locale="en-GB")
        staff.add_init_script(NAV_SIDEBAR_CLOSED)
        _log_in(staff.new_page(), base_url, password)
        for picture in wanted:
            if picture.phone:
                context = browser.new_context(viewport=PHONE_VIEWPORT, is_mobile=True)
            else:
                context = staff
            page = context.new_page()
            page.set_default_timeout(15_000)
            page.on("dialog", lambda dialog: dialog.accept())
            page.goto(base_url + picture.path)
            page.wait_for_load_state("networkidle")
            page.wait_for_timeout(400)
            clip = picture.step(page) if picture.step else None
            path = out / f"{picture.name}.png"
            if picture.element:
                clip = _box(page, page.locator(picture.element).first)
            if clip:
                clip["height"] = min(clip["height"], picture.max_height)
                page.screenshot(path=path, clip=clip, full_page=True)
            else:
                height = min(
                    page.evaluate("document.documentElement.scrollHeight"), picture.max_height
                )
                width = page.viewport_size["width"]
                page.screenshot(
                    path=path,
                    full_page=True,
                    clip={"x": 0, "y": 0, "width": width, "height": height},
                )
            made.append(path)
            page.close()
            if picture.phone:
                context.close()
        browser.close()
    return made


if __name__ == "__main__":
    sys.exit(main())
