"""
Partner list imports: read a file, plan every row against the database in
bulk, preview the plan, apply exactly that plan, and revert it.

The admin's import screen (through crm.resources.SupporterResource), the
`import_supporters` command and the Celery task all run these functions:

    import_preview()   read and check the file, plan each row, keep the plan as a batch
    import_enqueue()   hand a large confirmed batch to a worker
    import_confirm()   check under locks that nothing changed, apply the plan
    import_revert()    undo what a batch created that nothing has touched since
    import_expire_previews()  forget files that were previewed but never confirmed
    import_recover()   queue again an import whose worker died while applying it

and the admin keeps an upload between its steps with upload_keep() and upload_read().

One module per step, each importing only the ones above it:

    files.py     size limit, format and encoding detection; CSV, TSV, XLSX, JSON -> Table
    columns.py   heading row -> supporter fields: guess_columns() (the partner's remembered
                 choices, then COLUMN_ALIASES), match_columns(), the CSV template
    uploads.py   an uploaded file kept (in the cache) while staff match its columns
    rows.py      data rows -> Row: cells checked, duplicates merged; the outcomes
    bulk.py      chunks, and the garbage collector paused for a whole file
    state.py     what the database holds about a file's addresses, and its fingerprint
    plan.py      ImportOptions, ImportPlan, import_plan(): what importing does, row by row
    preview.py   import_preview(), import_replan(), import_expire_previews()
    writers.py   supporters' bulk writers: _DjangoWriter (ORM) and _PostgresWriter (COPY, SQL)
    confirm.py   import_enqueue(), import_confirm(), import_recover(), progress
    revert.py    import_revert()

Reading, matching and planning change nothing. Writes happen in preview.py
(the batch and its stored plan; expiry, and previews a newer one replaced),
confirm.py (the batch's status; the partner's remembered columns; supporters
and their history through writers.py; subscriptions, consent records and the
batch's audit event through crm.services) and revert.py (through
crm.services too); uploads.py writes only to the cache.

Work is set-based: existing supporters, subscriptions and suppressions are
looked up in chunks of addresses, and rows are written in bulk (on
PostgreSQL, binary COPY and INSERT ... SELECT), so a 100,000-row file takes
seconds, not minutes.
Messages kept on a batch and written to logs never contain email addresses.
The errors (ImportRejected, ImportRefused, ImportFailed) live in crm/exceptions.py
and are importable from here too.
"""

from crm.exceptions import ImportFailed, ImportRefused, ImportRejected
from crm.imports.columns import (
    COLUMN_ALIASES,
    FIELD_LABELS,
    ColumnsRejected,
    column_examples,
    guess_columns,
    match_columns,
    not_imported_note,
    template_rows,
)
from crm.imports.confirm import (
    MAX_INTERRUPTIONS,
    import_confirm,
    import_enqueue,
    import_progress,
    import_recover,
    progress_key,
)
from crm.imports.files import (
    ENCODINGS,
    FORMATS,
    Table,
    check_size,
    detect_format,
    import_max_bytes,
    read_table,
)
from crm.imports.plan import ImportOptions, ImportPlan, import_plan
from crm.imports.preview import (
    ImportPreview,
    import_discard_preview,
    import_expire_previews,
    import_preview,
    import_replan,
)
from crm.imports.revert import import_revert
from crm.imports.rows import (
    ERROR,
    MERGED,
    NEW,
    OUTCOME_LABELS,
    SKIPPED,
    UNCHANGED,
    UPDATED,
)
from crm.imports.uploads import (
    Upload,
    upload_forget,
    upload_keep,
    upload_read,
    upload_replace_preview,
)

__all__ = [
    "COLUMN_ALIASES",
    "ENCODINGS",
    "ERROR",
    "FIELD_LABELS",
    "FORMATS",
    "MAX_INTERRUPTIONS",
    "MERGED",
    "NEW",
    "OUTCOME_LABELS",
    "SKIPPED",
    "UNCHANGED",
    "UPDATED",
    "ColumnsRejected",
    "ImportFailed",
    "ImportOptions",
    "ImportPlan",
    "ImportPreview",
    "ImportRefused",
    "ImportRejected",
    "Table",
    "Upload",
    "check_size",
    "column_examples",
    "detect_format",
    "guess_columns",
    "import_confirm",
    "import_discard_preview",
    "import_enqueue",
    "import_expire_previews",
    "import_max_bytes",
    "import_plan",
    "import_preview",
    "import_progress",
    "import_recover",
    "import_replan",
    "import_revert",
    "match_columns",
    "not_imported_note",
    "progress_key",
    "read_table",
    "template_rows",
    "upload_forget",
    "upload_keep",
    "upload_read",
    "upload_replace_preview",
]
