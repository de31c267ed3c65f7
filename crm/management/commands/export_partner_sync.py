import datetime
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from crm import exports
from crm.models import PartnerOrganisation


def _since(value):
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a date; write it as YYYY-MM-DD") from None
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment


class Command(BaseCommand):
    help = (
        "Write a partner's sync file: everyone who came from the partner with their current "
        "status, opt-outs since the last sync first. Records the sync date on the partner."
    )

    def add_arguments(self, parser):
        parser.add_argument("partner", metavar="SLUG")
        parser.add_argument("file", type=Path, help="Where to write; .csv or .xlsx.")
        parser.add_argument(
            "--since",
            type=_since,
            help="Flag opt-outs after this date (YYYY-MM-DD) instead of after the last sync.",
        )

    def handle(self, *args, partner, file, since, **options):
        partner_obj = PartnerOrganisation.objects.filter(slug=partner).first()
        if partner_obj is None:
            known = ", ".join(PartnerOrganisation.objects.values_list("slug", flat=True))
            raise CommandError(f"No partner with slug {partner!r}. Known partners: {known}.")
        file_format = file.suffix.lower().lstrip(".")
        if file_format not in exports.FILE_FORMATS:
            raise CommandError("The file name must end in .csv or .xlsx.")
        result = exports.partner_sync_export(
            partner=partner_obj, file_format=file_format, since=since, source="command"
        )
        file.write_bytes(result.content)
        since_text = f"since {result.since:%Y-%m-%d %H:%M}" if result.since else "ever"
        self.stdout.write(
            self.style.SUCCESS(
                f"Wrote {result.rows:,} supporters from {partner_obj.name} to {file} "
                f"({result.opt_outs:,} opted out {since_text})."
            )
        )
