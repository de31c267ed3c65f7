from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from crm import imports
from crm.models import CampaignInterest, PartnerOrganisation
from crm.resources import SupporterResource

SHOWN_ISSUES = 20


class Command(BaseCommand):
    help = (
        "Import a partner's list of supporters (CSV, TSV, XLSX or JSON): preview it with "
        "--dry-run, or import it. The same checks and rules as the admin's import screen."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--partner", required=True, help="The partner's slug.")
        parser.add_argument(
            "--interest",
            action="append",
            default=[],
            metavar="SLUG",
            help="Subscribe every row to this interest too (repeatable).",
        )
        parser.add_argument("--dry-run", action="store_true", help="Preview only; change nothing.")
        parser.add_argument(
            "--overwrite",
            action="store_true",
            help="Let the file's values replace values we already hold (default: fill empty only).",
        )
        parser.add_argument(
            "--skip-invalid",
            action="store_true",
            help="Import the valid rows and skip rows with errors (default: refuse the file).",
        )
        parser.add_argument(
            "--column",
            action="append",
            default=[],
            metavar="HEADING=FIELD",
            help="What a column holds, when its heading is not one Rally recognises: a field "
            f"({', '.join(imports.FIELD_LABELS)}), or nothing to ignore the column, e.g. "
            "--column 'Supporter mail=email' (repeatable). Without it the partner's last "
            "confirmed choices are used, then Rally's guesses.",
        )
        parser.add_argument("--format", choices=sorted(imports.FORMATS), default="")
        parser.add_argument("--encoding", choices=sorted(imports.ENCODINGS), default="auto")

    def handle(self, *args, file, partner, interest, dry_run, **options):
        partner_obj = PartnerOrganisation.objects.filter(slug=partner).first()
        if partner_obj is None:
            known = ", ".join(PartnerOrganisation.objects.values_list("slug", flat=True))
            raise CommandError(f"No partner with slug {partner!r}. Known partners: {known}.")
        interests = list(CampaignInterest.objects.filter(slug__in=interest))
        missing = set(interest) - {i.slug for i in interests}
        if missing:
            raise CommandError(f"Unknown interest(s): {', '.join(sorted(missing))}.")
        if not file.is_file():
            raise CommandError(f"No such file: {file}")
        columns = self._columns(options["column"])
        try:
            imports.check_size(file.stat().st_size)
            resource = SupporterResource(
                partner=partner_obj,
                interests=interests,
                options=imports.ImportOptions(
                    file_format=options["format"],
                    encoding=options["encoding"],
                    overwrite=options["overwrite"],
                    skip_invalid=options["skip_invalid"],
                    columns=columns,
                ),
            )
            report = resource.import_data(
                None,
                dry_run=dry_run,
                file_data=file.read_bytes(),
                file_name=file.name,
                keep_preview=False,
            )
        except (imports.ImportRejected, imports.ImportFailed, imports.ImportRefused) as error:
            raise CommandError(error.messages[0]) from None

        counts = report.counts
        verb = "Imported" if report.batch and not dry_run else "Would import"
        summary = ", ".join(
            f"{counts.get(key, 0):,} {label.lower()}"
            for key, label in imports.OUTCOME_LABELS.items()
        )
        self.stdout.write(f"{verb} {counts.get('rows', 0):,} rows from {file.name}: {summary}.")
        if report.preview is not None:
            issues = report.preview.plan.report()
            limit = None if options["verbosity"] > 1 else SHOWN_ISSUES
            for _number, _outcome, message in issues[:limit]:
                self.stdout.write(f"  {message}")
            if limit and len(issues) > limit:
                self.stdout.write(f"  … and {len(issues) - limit:,} more (use -v 2 to see all).")
            if counts.get(imports.ERROR) and not options["skip_invalid"]:
                raise CommandError(
                    f"{counts[imports.ERROR]:,} rows have errors, so nothing was imported. "
                    "Fix them and run again, or use --skip-invalid."
                )
            if dry_run:
                self.stdout.write("Dry run: nothing was changed.")
                return
        batch = report.batch
        self.stdout.write(
            self.style.SUCCESS(
                f"Batch #{batch.pk}: {counts.get('created', 0):,} supporters created, "
                f"{counts.get('changed', 0):,} updated, {counts.get('subscribed', 0):,} "
                f"subscriptions and consent records written."
            )
        )

    @staticmethod
    def _columns(given):
        columns = {}
        for item in given:
            heading, equals, field = item.partition("=")
            field = field.strip()
            if not equals or not heading.strip():
                raise CommandError(f"--column {item!r}: write it as HEADING=FIELD.")
            if field and field not in imports.FIELD_LABELS:
                raise CommandError(
                    f"--column {item!r}: {field!r} is not a field Rally imports; use one of "
                    f"{', '.join(imports.FIELD_LABELS)}, or nothing to ignore the column."
                )
            columns[heading.strip()] = field
        return columns
