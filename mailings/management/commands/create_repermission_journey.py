from django.core.management.base import BaseCommand, CommandError

from crm.models import CampaignInterest, Segment
from mailings import repermission
from mailings.exceptions import MailingRefused


class Command(BaseCommand):
    help = (
        "Create a draft re-permission journey: the segment's members are asked whether they "
        "still want email, and those who do not click within the wait are unsubscribed."
    )

    def add_arguments(self, parser):
        parser.add_argument("--segment", required=True, help="The segment's name.")
        parser.add_argument(
            "--interest",
            action="append",
            required=True,
            help="An interest's slug the journey asks about (repeat for several).",
        )
        parser.add_argument("--wait-days", type=int, default=14, help="Days to answer (14).")

    def handle(self, *args, segment, interest, wait_days, **options):
        found = Segment.objects.filter(name=segment).first()
        if found is None:
            raise CommandError(f"No segment is called “{segment}”.")
        interests = list(CampaignInterest.objects.filter(slug__in=interest))
        missing = set(interest) - {i.slug for i in interests}
        if missing:
            raise CommandError(f"No interest has the slug {', '.join(sorted(missing))}.")
        try:
            journey = repermission.repermission_journey_create(
                segment=found, interests=interests, wait_days=wait_days
            )
        except MailingRefused as error:
            raise CommandError(error.message) from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Draft journey “{journey}” made (id {journey.pk}). Read its email in the admin "
                "under Journeys, then start it."
            )
        )
