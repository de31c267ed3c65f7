"""
django-import-export resources: the declarations the admin's import and
export screens are built from, handing the work to crm.imports and
crm.exports so that the admin and the management commands share one path.

Stock django-import-export looks each row up and saves it one by one;
SupporterResource.import_data plans and writes the whole file in bulk
instead, and returns an ordinary import_export Result for the admin.
"""

from django.core.exceptions import ValidationError
from import_export import fields, resources
from import_export.results import InvalidRow, Result, RowResult

from crm import exports, imports
from crm.models import Supporter

# Rows shown one by one on the admin preview; every row is counted, and the
# full per-row preview can be downloaded.
PREVIEW_ROWS = 1000

IMPORT_TYPES = {
    imports.NEW: RowResult.IMPORT_TYPE_NEW,
    imports.UPDATED: RowResult.IMPORT_TYPE_UPDATE,
    imports.UNCHANGED: RowResult.IMPORT_TYPE_SKIP,
    imports.SKIPPED: RowResult.IMPORT_TYPE_SKIP,
    imports.MERGED: RowResult.IMPORT_TYPE_SKIP,
    imports.ERROR: RowResult.IMPORT_TYPE_INVALID,
}


class ImportReport(Result):
    """A django-import-export Result for a bulk-planned import.

    `totals` count every row; `rows` and `invalid_rows` hold at most
    PREVIEW_ROWS of them for display. `preview` is the crm.imports preview
    (dry run) and `batch` the ImportBatch to confirm or that was applied.
    """

    def __init__(self, *, preview=None, batch=None):
        super().__init__()
        self.preview = preview
        self.batch = batch or (preview.batch if preview is not None else None)
        if batch is not None:
            counts = batch.counts
        elif preview is not None:
            counts = preview.plan.counts
        else:
            counts = {}
        self.total_rows = counts.get("rows", 0)
        if preview is not None:
            self.diff_headers = ["Row", "Email", "Outcome", "What happens"]
            for row in preview.plan.rows:
                if row.outcome == imports.ERROR and len(self.invalid_rows) < PREVIEW_ROWS:
                    self.invalid_rows.append(
                        InvalidRow(
                            number=row.number,
                            validation_error=ValidationError(row.message),
                            values=(row.number, row.email, "Error", row.message),
                        )
                    )
                elif row.outcome != imports.ERROR and len(self.rows) < PREVIEW_ROWS:
                    result = RowResult()
                    result.import_type = IMPORT_TYPES[row.outcome]
                    result.object_id = row.supporter_id
                    result.diff = [row.number, row.email, row.outcome, preview.plan.describe(row)]
                    self.rows.append(result)
        self.counts = counts
        self.totals[RowResult.IMPORT_TYPE_NEW] = counts.get(imports.NEW, 0)
        self.totals[RowResult.IMPORT_TYPE_UPDATE] = counts.get(imports.UPDATED, 0)
        not_written = (imports.UNCHANGED, imports.SKIPPED, imports.MERGED)
        self.totals[RowResult.IMPORT_TYPE_SKIP] = sum(counts.get(key, 0) for key in not_written)
        self.totals[RowResult.IMPORT_TYPE_INVALID] = counts.get(imports.ERROR, 0)

    def has_validation_errors(self):
        # Rows with errors only block the import when the options do not skip them.
        return bool(self.invalid_rows) and self.batch is None


class SupporterResource(resources.ModelResource):
    """Supporters and their current interests, as partner lists and exports have them."""

    email = fields.Field(attribute="email", column_name="Email")
    first_name = fields.Field(attribute="first_name", column_name="First name")
    last_name = fields.Field(attribute="last_name", column_name="Last name")
    postcode = fields.Field(attribute="postcode", column_name="Postcode")
    country = fields.Field(attribute="country", column_name="Country")
    phone = fields.Field(attribute="phone", column_name="Phone")
    organisation = fields.Field(attribute="organisation", column_name="Organisation")
    status = fields.Field(attribute="status", column_name="Status", readonly=True)
    source = fields.Field(attribute="source", column_name="Source", readonly=True)
    partner = fields.Field(column_name="Partner")
    interests = fields.Field(column_name="Interests")
    created_at = fields.Field(attribute="created_at", column_name="Joined", readonly=True)
    updated_at = fields.Field(attribute="updated_at", column_name="Last changed", readonly=True)

    class Meta:
        model = Supporter
        fields = tuple(exports.COLUMNS)
        export_order = tuple(exports.COLUMNS)
        import_id_fields = ("email",)
        skip_unchanged = True
        report_skipped = True
        use_transactions = True

    def __init__(self, *, partner=None, interests=(), options=None, **kwargs):
        super().__init__(**kwargs)
        self.partner = partner
        self.interests = list(interests)
        self.options = options or imports.ImportOptions()

    @classmethod
    def get_display_name(cls):
        return "Supporters (partner list)"

    def import_data(self, dataset, dry_run=False, raise_errors=False, **kwargs):
        """Plan (dry run) or apply a partner list in bulk; return an ImportReport.

        Keyword arguments: `file_data` and `file_name` (the uploaded bytes;
        without them `dataset` is imported as CSV), `user`, `keep_preview`
        (False: a dry run stores no batch), and for the confirm step `batch`,
        the ImportBatch a dry run returned. Whole-file
        problems raise imports.ImportRejected; a failed confirm raises
        imports.ImportFailed.
        """
        user = kwargs.get("user")
        batch = kwargs.get("batch")
        if batch is None:
            data = kwargs.get("file_data")
            file_name = kwargs.get("file_name") or "import.csv"
            if data is None:
                data = dataset.export("csv").encode()
                self.options.file_format = "csv"
            preview = imports.import_preview(
                data=data,
                file_name=file_name,
                partner=self.partner,
                interests=self.interests,
                options=self.options,
                actor=user if user and user.is_authenticated else None,
                keep=kwargs.get("keep_preview", True) or not dry_run,
            )
            if dry_run or preview.batch is None:
                return ImportReport(preview=preview)
            actor = user if user and user.is_authenticated else None
            batch = imports.import_confirm(batch_id=preview.batch.pk, actor=actor)
            return ImportReport(preview=preview, batch=batch)
        if dry_run:
            return ImportReport(preview=imports.import_replan(batch=batch))
        actor = user if user and user.is_authenticated else None
        return ImportReport(batch=imports.import_confirm(batch_id=batch.pk, actor=actor))

    def export(self, queryset=None, **kwargs):
        """Export through crm.exports (fast, formulas escaped) as a tablib Dataset."""
        import tablib

        columns = kwargs.get("export_fields") or list(exports.COLUMNS)
        if queryset is None:
            queryset = self.get_queryset()
        rows = exports.supporter_rows(supporters=queryset, columns=columns)
        return tablib.Dataset(
            *[[exports.escape_formula(value) for value in row] for row in rows],
            headers=[exports.COLUMNS[name] for name in columns],
        )
