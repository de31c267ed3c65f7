import time

from django.core.management.base import BaseCommand

from crm.demo import demo_seed


class Command(BaseCommand):
    help = "Create demo data: campaign interests, partner organisations, supporters, segments."

    def add_arguments(self, parser):
        parser.add_argument(
            "--supporters", type=int, default=2_000, help="How many supporters to add (2,000)."
        )
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="Do nothing if the database already has supporters (used by the run command).",
        )

    def handle(self, *args, supporters, if_empty, **options):
        from crm.models import Supporter

        if if_empty and Supporter.objects.exists():
            self.stdout.write("Demo data already loaded; leaving the database as it is.")
            return
        started = time.monotonic()
        counts = demo_seed(supporters=supporters)
        from mailings.demo import demo_newsletters

        counts.update(demo_newsletters())
        from mailings.journeys.demo import demo_journeys

        counts.update(demo_journeys())
        from mailings.actions.demo import demo_actions

        counts.update(demo_actions())
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo data ready in {time.monotonic() - started:.1f}s: "
                + ", ".join(f"{value:,} {key}" for key, value in counts.items())
            )
        )
