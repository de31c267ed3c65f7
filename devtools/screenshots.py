"""
Make the screenshots of the staff guide (docs/staff.md) from the demo data.

    python -m devtools.screenshots [--out docs/img/staff] [--only supporters report ...]

Each run starts from nothing: a fresh SQLite database in a temporary
directory, migrated, with the demo data (manage.py seed_demo) and the demo
superuser (manage.py ensure_admin). It starts the development server on a free
port (DEBUG on, mail kept in memory: nothing is sent anywhere), logs in with
Chromium through Playwright, saves one PNG per entry of SHOTS (1280 px wide for
staff pages, 390 px for supporter pages), stops the server and removes the
directory. Rerun it whenever a page changes; the PNGs are overwritten.

Programs come from the running environment (sys.executable); Chromium is
Debian's /usr/bin/chromium unless --chromium says otherwise. When `optipng` is
installed the PNGs are compressed further.
"""

import argparse
import csv
import dataclasses
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "docs" / "img" / "staff"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"]
STAFF_VIEWPORT = {"width": 1280, "height": 800}
PHONE_VIEWPORT = {"width": 390, "height": 844}
NAV_SIDEBAR_CLOSED = "localStorage.setItem('django.admin.navSidebarIsOpen', 'false')"
# Where a page's content ends: full-page pictures stop there, not at the foot of the app list.
CONTENT_BOTTOM = """() => {
    const content = document.querySelector('#content') || document.body;
    return Math.ceil(content.getBoundingClientRect().bottom + window.scrollY) + 24;
}"""
UNSET = {"REDIS_URL", "CELERY_BROKER_URL", "SECRET_KEY", "RALLY_MAILSINK_URL"}


@dataclasses.dataclass
class Shot:
    """One screenshot: a page, where it comes from, and how much of it to keep."""

    name: str  # the PNG's name, without .png
    path: str  # the page's path on the server
    phone: bool = False  # a supporter page, at 390 px and logged out
    full_page: bool = False  # the whole page, up to max_height
    max_height: int = 2000
    dark: bool = False  # with the system's dark colour scheme
    upload: bool = False  # the import page, after uploading PARTNER_CSV


# A partner's list as partners send them: its own column headings, for the
# column mapping the import preview shows. Made-up people at example.org.
PARTNER_CSV = [
    ["E-mail address", "First name", "Surname", "Post code", "Topics", "Signed up"],
    ["amira.haddad@example.org", "Amira", "Haddad", "N1 9GU", "r2p", "2026-10-02"],
    ["tom.okafor@example.org", "Tom", "Okafor", "SE1 7PB", "r2p; Atrocity prevention", ""],
    [
        "grace.lindqvist@example.org",
        "Grace",
        "Lindqvist",
        "EH1 1YZ",
        "Responsibility to Protect",
        "",
    ],
    ["not-an-address", "Pat", "Smith", "M1 1AE", "r2p", "2026-10-11"],
]


def shots() -> list[Shot]:
    """Return the guide's screenshots, their paths read from the demo data in the database."""
    from django.db.models import Count
    from django.urls import reverse

    from crm.models import Segment, Supporter
    from mailings.journeys.models import Journey
    from mailings.models import Mailing
    from mailings.tokens import make_preferences_token

    # A supporter with a story to tell: subscribed, mailed, opened and clicked.
    supporter = (
        Supporter.objects.filter(
            status=Supporter.Status.ACTIVE, deliveries__events__event_type="clicked"
        )
        .order_by("pk")
        .first()
        or Supporter.objects.filter(status=Supporter.Status.ACTIVE).order_by("pk").first()
    )
    segment = (
        Segment.objects.filter(kind=Segment.Kind.RULES).order_by("pk").first()
        or Segment.objects.order_by("pk").first()
    )
    sent = Mailing.objects.filter(status=Mailing.Status.SENT).order_by("pk").first()
    # The mailing still to send with the most recipients: the page before sending.
    draft = (
        Mailing.objects.exclude(status=Mailing.Status.SENT)
        .annotate(n=Count("interests"))
        .order_by("-n", "pk")
        .first()
    )

    journey = Journey.objects.order_by("pk").first()

    def admin(name, *args):
        return reverse(f"admin:{name}", args=args)

    return [
        Shot("dashboard", admin("index")),
        Shot("supporters", admin("crm_supporter_changelist")),
        Shot("supporters-dark", admin("crm_supporter_changelist"), dark=True),
        Shot(
            "supporter",
            admin("crm_supporter_change", supporter.pk),
            full_page=True,
            max_height=1300,
        ),
        Shot("segments", admin("crm_segment_changelist")),
        Shot("segment", admin("crm_segment_change", segment.pk), full_page=True),
        Shot("import", admin("crm_supporter_import")),
        Shot("import-preview", admin("crm_supporter_import"), upload=True, full_page=True),
        Shot("mailings", admin("mailings_mailing_changelist")),
        Shot("mailing", admin("mailings_mailing_change", draft.pk), full_page=True),
        Shot("report", admin("mailings_mailing_report", sent.pk), full_page=True, max_height=2400),
        Shot("report-clickers", admin("mailings_mailing_report_people", sent.pk) + "?who=clicked"),
        Shot("erase", admin("crm_supporter_erase", supporter.pk)),
        Shot("journeys", admin("journeys_journey_changelist")),
        Shot("journey", admin("journeys_journey_change", journey.pk), full_page=True),
        Shot("join", reverse("signup"), phone=True, full_page=True),
        Shot(
            "preferences",
            reverse("preferences", args=[make_preferences_token(supporter)]),
            phone=True,
            full_page=True,
        ),
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the PNGs")
    parser.add_argument("--only", nargs="*", help="make only these screenshots (by name)")
    parser.add_argument("--chromium", default=CHROMIUM, help=f"Chromium to use ({CHROMIUM})")
    parser.add_argument(
        "--supporters", type=int, default=2_000, help="demo supporters to load (2,000)"
    )
    options = parser.parse_args(argv)
    options.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="rally-screenshots-") as folder:
        port = _free_port()
        env = _environment(Path(folder), port)
        os.environ.update(env)
        # No real services: the embedded broker in the folder, no ESP settings.
        for name in [k for k in os.environ if k.startswith("ANYMAIL_") or k in UNSET]:
            del os.environ[name]
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", interactive=False, verbosity=0)
        call_command("seed_demo", supporters=options.supporters)
        call_command("ensure_admin", stdout=io.StringIO())  # its password is read below
        password = (Path(folder) / "var" / "admin-credentials.txt").read_text().strip()
        wanted = [s for s in shots() if not options.only or s.name in options.only]
        unknown = set(options.only or ()) - {s.name for s in wanted}
        if unknown:
            parser.error(f"no screenshot called {', '.join(sorted(unknown))}")
        # Django forbids database access while Playwright's event loop runs in this
        # thread; everything the browser needs is read above, so close the connection.
        from django.db import connections

        connections.close_all()

        server = _start_server(port, os.environ.copy(), Path(folder) / "server.log")
        try:
            made = _take(
                wanted, f"http://127.0.0.1:{port}", password, options.out, options.chromium
            )
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


def _environment(folder: Path, port: int) -> dict:
    """Settings for a throwaway Rally: its own database, files and port, mail kept in memory."""
    return {
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DEBUG": "1",
        "DATABASE_URL": f"sqlite:///{folder / 'rally.sqlite3'}",
        "RALLY_VAR_DIR": str(folder / "var"),
        "SITE_URL": f"http://127.0.0.1:{port}",
        "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
        "RALLY_STAFF_2FA": "off",
        "TIME_ZONE": "Europe/London",
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_server(port, env, log_path):
    log = log_path.open("w")
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"The development server stopped:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login/", timeout=2):
                return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.3)
    server.terminate()
    raise SystemExit(
        f"The development server did not answer within a minute:\n{log_path.read_text()}"
    )


def _take(wanted, base_url, password, out, chromium) -> list[Path]:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    made = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        staff = {}
        for shot in wanted:
            scheme = "dark" if shot.dark else "light"
            if shot.phone:
                context = browser.new_context(
                    viewport=PHONE_VIEWPORT, is_mobile=True, locale="en-GB", color_scheme=scheme
                )
            else:
                if scheme not in staff:
                    staff[scheme] = browser.new_context(
                        viewport=STAFF_VIEWPORT, locale="en-GB", color_scheme=scheme
                    )
                    # The app list beside each page starts closed, as after a click
                    # on its », so that lists show their columns in the pictures.
                    staff[scheme].add_init_script(NAV_SIDEBAR_CLOSED)
                    _log_in(staff[scheme].new_page(), base_url, password)
                context = staff[scheme]
            page = context.new_page()
            page.set_default_timeout(15_000)
            page.goto(base_url + shot.path)
            if shot.upload:
                try:
                    _upload_partner_list(page)
                except PlaywrightError as error:
                    # The import page changed: picture it as it is, and say so.
                    first_line = str(error).splitlines()[0]
                    print(f"{shot.name}: the upload failed ({first_line})", file=sys.stderr)
            page.wait_for_load_state("networkidle")
            path = out / f"{shot.name}.png"
            _save(page, shot, path)
            made.append(path)
            page.close()
            if shot.phone:
                context.close()
        browser.close()
    return made


def _log_in(page, base_url, password):
    page.goto(f"{base_url}/admin/login/")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base_url}/admin/")
    page.close()


def _upload_partner_list(page):
    """Choose a partner's CSV on the import page and ask for its preview."""
    with tempfile.TemporaryDirectory(prefix="rally-screenshots-") as folder:
        path = Path(folder) / "partner-list-october.csv"
        with path.open("w", newline="") as file:
            csv.writer(file).writerows(PARTNER_CSV)
        form = page.locator("form:has(input[type=file])")
        form.locator("input[type=file]").set_input_files(path)
        # Pick the first choice of every list still on its empty choice (format, partner).
        for select in form.locator("select").all():
            if not select.input_value():
                values = select.locator("option").evaluate_all("os => os.map(o => o.value)")
                if any(values):
                    select.select_option(next(v for v in values if v))
        form.locator("[type=submit]").first.click()
        page.wait_for_load_state("networkidle")


def _save(page, shot, path):
    viewport = page.viewport_size
    height = viewport["height"]
    if shot.full_page:
        page_height = page.evaluate("document.documentElement.scrollHeight")
        height = min(page.evaluate(CONTENT_BOTTOM), page_height, shot.max_height)
    page.screenshot(
        path=path,
        full_page=shot.full_page,
        clip={"x": 0, "y": 0, "width": viewport["width"], "height": height},
    )


def _optimise(path):
    optipng = shutil.which("optipng")
    if optipng:
        subprocess.run([optipng, "-quiet", "-o2", str(path)], check=True)


if __name__ == "__main__":
    sys.exit(main())
