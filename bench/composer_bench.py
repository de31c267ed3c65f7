"""
Time the composer over the demo newsletters: the accessibility check, the MJML
compile, and what a worker pays per recipient afterwards.

    DEBUG=1 .venv/bin/python bench/composer_bench.py [--repeat 50]

Needs no database server: it builds the demo newsletters in memory (unsaved
Mailing rows, the built-in email template) on an in-memory SQLite database.
For each newsletter it prints the problems the check finds (none, for the
demo) and, as the median of --repeat runs:

* check: check_mailing(), which validates the blocks and compiles the email
  to measure its size;
* MJML: blocks -> MJML -> HTML with the compile cache cleared (what the first
  message of a mailing costs a worker process, once);
* prepare: PreparedMailing(), the whole once-per-mailing step, cache warm;
* message: one recipient's AnymailMessage from the prepared mailing (the
  per-recipient string join, plus the two signed links).
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DATABASE_URL"] = "sqlite://:memory:"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
os.environ.setdefault("SITE_URL", "https://rally.example.org")


def median_ms(function, repeat):
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)

    from crm.models import Supporter
    from mailings import emails
    from mailings.composer import checks, render
    from mailings.demo import BANNER, NEWSLETTERS, demo_blocks
    from mailings.models import Mailing

    reader = Supporter.objects.create(email="reader@example.org", first_name="Amara")
    load = os.getloadavg()
    print(
        f"{os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
        f"median of {args.repeat} runs"
    )
    print(f"{'newsletter':<52} {'blocks':>6} {'HTML KB':>8} {'check':>9} {'MJML':>9} "
          f"{'prepare':>9} {'message':>9}  problems")  # fmt: skip
    total_problems = 0
    for spec in NEWSLETTERS:
        mailing = Mailing.objects.create(
            name=spec["name"],
            subject=spec["subject"],
            preheader=spec["preheader"],
            blocks=demo_blocks(spec["blocks"], f"/newsletters/images/{BANNER}"),
        )
        problems = checks.check_mailing(mailing)
        total_problems += len(problems)

        def compile_cold(mailing=mailing):
            render.mjml_to_html.cache_clear()
            render.render_mailing(mailing, interests=[])

        prepared = emails.PreparedMailing(mailing)
        check_ms = median_ms(lambda mailing=mailing: checks.check_mailing(mailing), args.repeat)
        mjml_ms = median_ms(compile_cold, args.repeat)
        prepare_ms = median_ms(lambda m=mailing: emails.PreparedMailing(m), args.repeat)
        message_ms = median_ms(lambda p=prepared: p.message(reader), args.repeat * 20)
        size = len(prepared.message(reader).alternatives[0][0].encode()) / 1024
        print(
            f"{spec['name'][:52]:<52} {len(mailing.blocks):>6} {size:>8.1f} "
            f"{check_ms:>7.2f}ms {mjml_ms:>7.2f}ms {prepare_ms:>7.2f}ms {message_ms:>7.3f}ms  "
            + ("; ".join(str(p) for p in problems) or "none")
        )
    print(f"problems found: {total_problems}")
    return 1 if total_problems else 0


if __name__ == "__main__":
    sys.exit(main())
