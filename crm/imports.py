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

Work is set-based: existing supporters, subscriptions and suppressions are
looked up in chunks of addresses, and rows are written in bulk (on
PostgreSQL, binary COPY and INSERT ... SELECT), so a 100,000-row file takes
seconds, not minutes.
Messages kept on a batch and written to logs never contain email addresses.
"""

import contextlib
import csv
import datetime
import gc
import hashlib
import io
import json
import logging
import re
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from django.db import IntegrityError, connection, transaction
from django.db.models import BooleanField, Max
from django.db.models.expressions import RawSQL
from django.db.models.functions import Lower
from django.utils import timezone
from django_countries import countries

from crm.models import (
    AuditEvent,
    CampaignInterest,
    ConsentRecord,
    ImportBatch,
    PartnerOrganisation,
    Subscription,
    Supporter,
    Suppression,
    email_hasher,
    normalize_email,
)
from crm.services import RallyError

logger = logging.getLogger(__name__)

CHUNK = 10_000


class ImportRejected(RallyError, ValidationError):
    """The whole file cannot be imported (no email column, wrong encoding...).

    Nothing was stored; the message says what to fix.
    """


class ImportRefused(RallyError, ValidationError):
    """A batch cannot be confirmed or reverted in its current state."""


class ImportFailed(RallyError, ValidationError):
    """Applying a batch failed; the database is as it was before."""


# Reading files ---------------------------------------------------------------------

FORMATS = {
    "csv": "CSV",
    "tsv": "TSV (tab-separated)",
    "xlsx": "Excel workbook (XLSX)",
    "json": "JSON (a list of objects)",
}
EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".xlsx": "xlsx", ".json": "json"}
ENCODINGS = {
    "auto": "Detect (UTF-8, or Windows-1252 as Excel writes it)",
    "utf-8": "UTF-8",
    "cp1252": "Windows-1252 (Excel on Windows)",
    "latin-1": "Latin-1 (ISO-8859-1)",
    "utf-16": "UTF-16 (Excel's “Unicode text”)",
}

# What common non-spreadsheet files start with, to name them in the error.
SIGNATURES = [
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a zip archive or an Office document"),
    (b"\xd0\xcf\x11\xe0", "an old-style Office file (.xls or .doc)"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
]
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass
class Table:
    """The cells of an import file: a heading row and data rows.

    Row numbers are spreadsheet numbers: the headings are row 1, so
    `rows[i]` is row `i + 2`.
    """

    headers: list
    rows: list
    file_format: str
    encoding: str = ""

    def __len__(self):
        return len(self.rows)


def _size_label(size):
    return f"{size / 1_000_000:.1f} MB" if size >= 100_000 else f"{size / 1000:.0f} KB"


def import_max_bytes():
    return settings.RALLY_IMPORT_MAX_BYTES


def check_size(size):
    """Raise ImportRejected if a file of `size` bytes is over the configured limit."""
    limit = import_max_bytes()
    if size > limit:
        raise ImportRejected(
            f"The file is {_size_label(size)}; the largest file Rally imports is "
            f"{_size_label(limit)}. Split the list into smaller files and import each."
        )


def detect_format(*, data, file_name):
    """Return the format key for a file, from its name, or from its first bytes."""
    suffix = ""
    if "." in file_name:
        suffix = "." + file_name.rsplit(".", 1)[1].lower()
    if suffix in EXTENSIONS:
        return EXTENSIONS[suffix]
    if data.startswith(b"PK\x03\x04"):
        return "xlsx"
    if data.lstrip(b"\xef\xbb\xbf \r\n\t").startswith((b"[", b"{")):
        return "json"
    return "csv"


def read_table(*, data: bytes, file_name: str, file_format: str = "", encoding: str = "auto"):
    """Return the Table in `data`, or raise ImportRejected saying what is wrong with it."""
    check_size(len(data))
    file_format = file_format or detect_format(data=data, file_name=file_name)
    if file_format not in FORMATS:
        raise ImportRejected(
            f"Rally cannot import {file_format!r} files; use one of: {', '.join(FORMATS)}."
        )
    if not data.strip():
        raise ImportRejected("The file is empty.")
    if file_format == "xlsx":
        table = _read_xlsx(data)
    else:
        text, used = _decode(data, encoding, file_format)
        if file_format == "json":
            table = _read_json(text)
        else:
            table = _read_delimited(text, "\t" if file_format == "tsv" else None)
        table.encoding = used
    table.file_format = file_format
    while table.rows and not any(_is_filled(cell) for cell in table.rows[-1]):
        table.rows.pop()
    if not any(_is_filled(cell) for cell in table.headers):
        raise ImportRejected(
            "The first row is empty. The first row must name the columns, e.g. Email, "
            "First name, Last name."
        )
    if not table.rows:
        raise ImportRejected(
            "The file has a heading row but no data rows: there is nobody to import."
        )
    return table


def _is_filled(cell):
    return cell is not None and str(cell).strip() != ""


def _binary_kind(data):
    for signature, kind in SIGNATURES:
        if data.startswith(signature):
            return kind
    return None


def _decode(data, encoding, file_format):
    label = FORMATS[file_format].split(" ")[0]
    kind = _binary_kind(data)
    if kind:
        hint = (
            " If it is an Excel workbook, choose the XLSX format."
            if kind.startswith("a zip")
            else ""
        )
        raise ImportRejected(
            f"This is not a {label} file: it looks like {kind}.{hint} Export the list as "
            "CSV or XLSX and upload that."
        )
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) and encoding in ("auto", "utf-16"):
        candidates = ["utf-16"]
    elif encoding == "auto":
        candidates = ["utf-8-sig", "cp1252"]
    else:
        candidates = ["utf-8-sig" if encoding == "utf-8" else encoding]
    if b"\x00" in data and candidates != ["utf-16"]:
        raise ImportRejected(
            f"This is not a {label} file: it contains binary data. If it is UTF-16 text, "
            "choose the UTF-16 encoding, or save it from Excel as “CSV UTF-8”."
        )
    error = None
    for candidate in candidates:
        try:
            text = data.decode(candidate)
        except UnicodeDecodeError as exc:
            error = error or exc
            continue
        bad = CONTROL_CHARACTERS.search(text)
        if bad:
            row = text.count("\n", 0, bad.start()) + 1
            raise ImportRejected(
                f"This does not look like a {label} file: line {row} contains binary "
                "control characters. Export the list as CSV or XLSX and upload that."
            )
        return text, "utf-8" if candidate == "utf-8-sig" else candidate
    row = data.count(b"\n", 0, error.start) + 1
    if encoding == "auto":
        raise ImportRejected(
            "The file's text encoding was not recognised: it is neither UTF-8 nor "
            f"Windows-1252 (the first unreadable character is on line {row}). Save it from "
            "Excel as “CSV UTF-8 (Comma delimited)” and upload it again, or choose its "
            "encoding."
        )
    raise ImportRejected(
        f"The file is not in the {ENCODINGS[encoding]} encoding you chose: line {row} has "
        "a character that encoding cannot contain. Choose “Detect” or the file's real "
        "encoding, or save it from Excel as “CSV UTF-8”."
    )


def _read_delimited(text, delimiter):
    if delimiter is None:
        first_line = text.split("\n", 1)[0]
        # Excel in much of Europe writes semicolons; pick what the heading row uses.
        delimiter = max(",;\t", key=first_line.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        headers = next(reader, [])
        rows = list(reader)
    except csv.Error as error:
        raise ImportRejected(
            f"Line {reader.line_num} of the file cannot be read as CSV ({error}). Check for a "
            "stray quote mark or an over-long cell."
        ) from None
    return Table(headers=headers, rows=rows, file_format="csv")


def _read_json(text):
    try:
        items = json.loads(text)
    except ValueError as error:
        raise ImportRejected(f"The file is not valid JSON: {error}.") from None
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ImportRejected(
            "A JSON file must hold a list of objects, one per person, e.g. "
            '[{"email": "...", "first_name": "..."}].'
        )
    headers = list(dict.fromkeys(key for item in items for key in item))
    rows = [[item.get(key) for key in headers] for item in items]
    return Table(headers=headers, rows=rows, file_format="json")


def _read_xlsx(data):
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    kind = _binary_kind(data)
    if not data.startswith(b"PK\x03\x04"):
        what = f"it looks like {kind}" if kind else "it is not a zip-based workbook"
        hint = " Open it in Excel and save it as .xlsx or CSV." if kind and "Office" in kind else ""
        raise ImportRejected(f"This is not an Excel (XLSX) workbook: {what}.{hint}")
    try:
        # Formulas are read as formulas (data_only=False) so they can be refused.
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=False)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, ValueError):
        raise ImportRejected(
            "This is not a readable Excel (XLSX) workbook. It may be damaged, password "
            "protected, or another kind of file renamed; open it in Excel and save it as "
            ".xlsx or CSV."
        ) from None
    try:
        filled = [sheet for sheet in book.worksheets if _sheet_has_data(sheet)]
        if len(filled) > 1:
            names = ", ".join(f"“{sheet.title}”" for sheet in filled)
            raise ImportRejected(
                f"The workbook has {len(filled)} sheets with data ({names}); Rally imports "
                "one sheet at a time. Delete the other sheets, or save the sheet you want "
                "as CSV."
            )
        if not filled:
            raise ImportRejected("The file is empty.")
        sheet = filled[0]
        rows = []
        for row in sheet.iter_rows():
            values = []
            for cell in row:
                if cell.data_type == "f":
                    raise ImportRejected(
                        f"Cell {cell.coordinate} on sheet “{sheet.title}” contains a formula. "
                        "Rally imports values, not formulas: select the cells, copy them, "
                        "paste them back with Paste Special → Values, save and upload again."
                    )
                values.append(cell.value)
            rows.append(values)
    finally:
        book.close()
    headers = rows.pop(0) if rows else []
    return Table(headers=headers, rows=rows, file_format="xlsx")


def _sheet_has_data(sheet):
    rows = sheet.iter_rows(values_only=True)
    return any(_is_filled(value) for row in rows for value in row)


# Matching columns ------------------------------------------------------------------

# Heading (lower-cased, letters and digits only) -> the field it fills.
COLUMN_ALIASES = {
    "email": "email emailaddress emailaddr mail mailaddress primaryemail contactemail "
    "personalemail emails",
    "first_name": "firstname first forename forenames givenname fname christianname",
    "last_name": "lastname last surname familyname lname secondname",
    "full_name": "name fullname contactname yourname supportername",
    "postcode": "postcode postalcode zip zipcode postcodezip zippostcode",
    "country": "country countrycode countryname nation",
    "phone": "phone telephone phonenumber tel mobile mobilenumber mobilephone telephonenumber",
    "organisation": "organisation organization organisationname organizationname company "
    "companyname org employer",
    "interests": "interests interest topics topic lists list campaigns subscriptions",
    "partner": "partner partnerslug partnerorganisation partnerorganization sourcepartner",
    "updated": "updated updatedat lastupdated lastmodified modified dateupdated lastchanged",
}
HEADING_TO_FIELD = {
    alias: name for name, aliases in COLUMN_ALIASES.items() for alias in aliases.split()
}
FIELD_LABELS = {
    "email": "Email",
    "first_name": "First name",
    "last_name": "Last name",
    "full_name": "Name",
    "postcode": "Postcode",
    "country": "Country",
    "phone": "Phone",
    "organisation": "Organisation",
    "interests": "Interests",
    "partner": "Partner",
    "updated": "Updated",
}
# Supporter fields an import fills or updates, in display order.
PERSON_FIELDS = ("first_name", "last_name", "postcode", "country", "phone", "organisation")
# What a new supporter holds in a field the file leaves empty.
NEW_DEFAULTS = dict.fromkeys(PERSON_FIELDS, "") | {"country": "GB"}


def heading_key(heading):
    return re.sub(r"[^a-z0-9]", "", str(heading or "").lower())


def match_columns(headers):
    """Return ({field: column index}, [ignored headings]) for a heading row.

    Raise ImportRejected when there is no email column or two columns claim
    the same field.
    """
    columns, ignored = {}, []
    for index, heading in enumerate(headers):
        name = HEADING_TO_FIELD.get(heading_key(heading))
        if name is None:
            if _is_filled(heading):
                ignored.append(str(heading).strip())
            continue
        if name in columns:
            first = str(headers[columns[name]]).strip()
            raise ImportRejected(
                f"Both “{first}” and “{str(heading).strip()}” look like the "
                f"{FIELD_LABELS[name]} column; keep one of them and upload again."
            )
        columns[name] = index
    if "email" not in columns:
        found = ", ".join(f"“{str(h).strip()}”" for h in headers if _is_filled(h)) or "none"
        raise ImportRejected(
            "The file has no email column. The first row must name the columns, and one "
            "must hold email addresses (headed Email, E-mail, Email address or similar). "
            f"Headings found: {found}."
        )
    return columns, ignored


# Planning ------------------------------------------------------------------------------

NEW, UPDATED, UNCHANGED, SKIPPED, MERGED, ERROR = (
    "new",
    "updated",
    "unchanged",
    "skipped",
    "merged",
    "error",
)
OUTCOME_LABELS = {
    NEW: "New",
    UPDATED: "Updated",
    UNCHANGED: "Unchanged",
    SKIPPED: "Skipped",
    MERGED: "Merged",
    ERROR: "Error",
}
# A supporter in one of these states is never subscribed by an import.
SKIP_STATUS_REASONS = {
    Supporter.Status.UNSUBSCRIBED: ("unsubscribed", "unsubscribed from all email"),
    Supporter.Status.BOUNCED: ("bounced", "their address bounced"),
    Supporter.Status.COMPLAINED: ("complained", "they marked our email as spam"),
    Supporter.Status.ERASED: ("erased", "their data was erased at their request"),
}
SUPPRESSION_REASONS = {
    Suppression.Reason.HARD_BOUNCE: "on the suppression list: the address bounced",
    Suppression.Reason.COMPLAINT: "on the suppression list: they complained about our email",
    Suppression.Reason.ERASURE: "on the suppression list: erased at their request",
    Suppression.Reason.STAFF: "on the suppression list (added by staff)",
    Suppression.Reason.ESP_UNSUBSCRIBE: "on the suppression list: unsubscribed at the ESP",
}
COUNTRY_ALIASES = {
    "uk": "GB",
    "unitedkingdom": "GB",
    "greatbritain": "GB",
    "britain": "GB",
    "england": "GB",
    "scotland": "GB",
    "wales": "GB",
    "northernireland": "GB",
    "usa": "US",
    "us": "US",
    "unitedstates": "US",
    "unitedstatesofamerica": "US",
}
SPLIT_INTERESTS = re.compile(r"\s*[,;|\n]\s*")


class Row:
    """One data row of a file and what importing it does."""

    __slots__ = (
        "changes",
        "email",
        "hash",
        "interest_ids",
        "key",
        "message",
        "new_interest_ids",
        "number",
        "outcome",
        "partner_id",
        "reason",
        "supporter_id",
        "updated",
        "values",
    )

    def __init__(self, number):
        self.number = number
        self.email = ""
        self.key = ""
        self.hash = ""
        self.values = {}
        self.interest_ids = set()
        self.partner_id = None
        self.updated = None
        self.outcome = ""
        self.message = ""
        self.reason = ""
        self.supporter_id = None
        self.changes = {}
        self.new_interest_ids = ()

    def fail(self, message):
        self.outcome = ERROR
        self.message = message if self.message == "" else f"{self.message}; {message}"


@dataclass
class ImportOptions:
    """How to read a file and merge it; stored on the batch between preview and confirm."""

    file_format: str = ""
    encoding: str = "auto"
    overwrite: bool = False
    skip_invalid: bool = False

    def as_dict(self):
        return {
            "file_format": self.file_format,
            "encoding": self.encoding,
            "overwrite": self.overwrite,
            "skip_invalid": self.skip_invalid,
        }

    @classmethod
    def from_dict(cls, data):
        return cls(**{key: data[key] for key in cls().as_dict() if key in data})


@dataclass
class ImportPlan:
    """What importing a file does, row by row."""

    rows: list
    columns: dict
    ignored_columns: list
    interests: dict  # id -> CampaignInterest, for display
    partners: dict  # id -> PartnerOrganisation
    counts: dict = field(default_factory=dict)
    state: "_State | None" = None  # what the plan was made from

    @property
    def errors(self):
        return [row for row in self.rows if row.outcome == ERROR]

    @property
    def has_errors(self):
        return bool(self.counts.get(ERROR))

    def report(self):
        """Return [row number, outcome, message] for each row that needs a word of explanation."""
        return [
            [row.number, row.outcome, row.message]
            for row in self.rows
            if row.outcome in (SKIPPED, MERGED, ERROR)
        ]

    def describe(self, row):
        """Return what importing `row` does, in words (for the preview)."""
        if row.outcome in (SKIPPED, MERGED, ERROR):
            return row.message
        parts = []
        if row.outcome == UPDATED and row.changes:
            labels = ", ".join(FIELD_LABELS[name].lower() for name in row.changes)
            parts.append(f"sets {labels}")
        if row.new_interest_ids:
            names = ", ".join(
                self.interests[pk].name for pk in sorted(row.new_interest_ids, key=self._order)
            )
            parts.append(f"subscribes to {names}")
        if row.message:
            parts.append(row.message)
        return "; ".join(parts)

    def _order(self, pk):
        interest = self.interests[pk]
        return (interest.position, interest.name)

    def payload(self):
        """Return what the confirm step needs to apply this plan and check it still holds.

        Compressed JSON: every address key the plan looked up (to read the
        same state again), the new supporters to create (each with the
        position of its key) and the changes and subscriptions for existing
        ones, each already decided.
        """
        keys, new, changed = [], [], []
        for row in self.rows:
            if row.outcome in (ERROR, MERGED):
                continue
            if row.outcome == NEW:
                get = row.values.get
                new.append(
                    [
                        len(keys),
                        row.email,
                        *(get(name, NEW_DEFAULTS[name]) for name in PERSON_FIELDS),
                        row.partner_id,
                        row.new_interest_ids,
                    ]
                )
            elif row.outcome == UPDATED:
                changed.append(
                    [row.supporter_id, row.changes, row.partner_id, row.new_interest_ids]
                )
            keys.append(row.key)
        data = {"keys": keys, "new": new, "changed": changed}
        return zlib.compress(json.dumps(data, separators=(",", ":")).encode(), 1)


class _Lookups:
    """Reference data a plan checks rows against, loaded once per plan."""

    def __init__(self, *, partner, interests):
        self.partner = partner
        self.default_interest_ids = {interest.pk for interest in interests}
        self.interests = {interest.pk: interest for interest in CampaignInterest.objects.all()}
        self.interest_keys = {}
        for interest in self.interests.values():
            self.interest_keys[interest.slug.lower()] = interest.pk
            self.interest_keys.setdefault(interest.name.lower(), interest.pk)
        self.partners = {p.pk: p for p in PartnerOrganisation.objects.all()}
        self.partners.setdefault(partner.pk, partner)
        self.partner_keys = {}
        for p in self.partners.values():
            self.partner_keys[p.slug.lower()] = p.pk
            self.partner_keys.setdefault(p.name.lower(), p.pk)
        self.countries = {}
        for code, name in countries:
            self.countries[code.lower()] = code
            self.countries[heading_key(name)] = code
            alpha3 = countries.alpha3(code)
            if alpha3:
                self.countries[alpha3.lower()] = code
        self.countries.update(COUNTRY_ALIASES)
        self.max_lengths = {
            name: Supporter._meta.get_field(name).max_length for name in ("email", *PERSON_FIELDS)
        }


def _cell_text(value):
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    return str(value).strip()


UPDATED_FORMATS = ("%d/%m/%Y", "%d/%m/%Y %H:%M", "%d/%m/%Y %H:%M:%S", "%d.%m.%Y")


def _parse_updated(value):
    if isinstance(value, datetime.datetime):
        moment = value
    elif isinstance(value, datetime.date):
        moment = datetime.datetime.combine(value, datetime.time())
    else:
        text = _cell_text(value)
        moment = None
        try:
            moment = datetime.datetime.fromisoformat(text)
        except ValueError:
            for pattern in UPDATED_FORMATS:
                try:
                    moment = datetime.datetime.strptime(text, pattern)
                    break
                except ValueError:
                    continue
        if moment is None:
            return None
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment


_validate_email = EmailValidator()
# Addresses this matches are valid by Django's EmailValidator too (a strict
# subset: dot-atom local part, letters-and-digits domain). Checking it first
# spares the full validator for all but unusual addresses.
PLAIN_EMAIL = re.compile(
    r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}",
    re.IGNORECASE,
)


def _email_is_valid(email):
    if PLAIN_EMAIL.fullmatch(email):
        return True
    try:
        _validate_email(email)
    except ValidationError:
        return False
    return True


def _read_rows(table, columns, lookups):
    """Turn each data row into a Row with checked values (or a row error)."""
    index = columns.get
    email_at, name_at = index("email"), index("full_name")
    interests_at, partner_at, updated_at = index("interests"), index("partner"), index("updated")
    field_at = [(name, columns[name]) for name in PERSON_FIELDS if name in columns]
    max_lengths = lookups.max_lengths
    # CSV and TSV cells are always text; spreadsheets and JSON hold numbers and dates too.
    all_text = table.file_format in ("csv", "tsv")
    text = str.strip if all_text else _cell_text
    # Interests cell -> (interest ids, unknown names): a list repeats a few values.
    interest_cells = {}
    rows = []
    for offset, cells in enumerate(table.rows):
        width = len(cells)
        if all_text:
            if not "".join(cells).strip():
                continue
        elif not any(_is_filled(cell) for cell in cells):
            continue
        row = Row(offset + 2)
        rows.append(row)
        email = text(cells[email_at]) if email_at < width else ""
        row.email = email
        if not email:
            row.fail("no email address")
        elif len(email) > max_lengths["email"]:
            row.fail(f"the email address is {len(email)} characters long; at most 254 fit")
        elif _email_is_valid(email):
            row.key = email.lower()
        else:
            row.fail("the email address is not valid")
        values = row.values
        for name, at in field_at:
            value = text(cells[at]) if at < width else ""
            if not value:
                continue
            if name == "country":
                code = lookups.countries.get(value.lower()) or lookups.countries.get(
                    heading_key(value)
                )
                if code is None:
                    row.fail(
                        f"“{value[:40]}” is not a country Rally knows; use a country name or "
                        "a two-letter code such as GB"
                    )
                    continue
                value = code
            elif len(value) > max_lengths[name]:
                row.fail(
                    f"{FIELD_LABELS[name]} is {len(value)} characters long; at most "
                    f"{max_lengths[name]} fit"
                )
                continue
            values[name] = value
        if name_at is not None and name_at < width:
            full = text(cells[name_at])
            if full and "first_name" not in values and "last_name" not in values:
                first, _, last = full.rpartition(" ")
                first, last = (first, last) if first else (last, "")
                for name, value in (("first_name", first), ("last_name", last)):
                    if len(value) > max_lengths[name]:
                        row.fail(
                            f"{FIELD_LABELS[name]} is {len(value)} characters long; at most "
                            f"{max_lengths[name]} fit"
                        )
                    elif value:
                        values[name] = value
        interest_ids = set(lookups.default_interest_ids)
        if interests_at is not None and interests_at < width:
            named = text(cells[interests_at])
            parsed = interest_cells.get(named)
            if parsed is None:
                parsed = interest_cells[named] = _parse_interests(named, lookups)
            found, unknown = parsed
            interest_ids |= found
            for token in unknown:
                known = ", ".join(i.slug for i in lookups.interests.values())
                row.fail(f"“{token[:40]}” is not a known interest (known: {known})")
        if not interest_ids and row.outcome != ERROR:
            row.fail(
                "no interest to subscribe to: fill the Interests column or choose interests "
                "for the whole import"
            )
        row.interest_ids = interest_ids
        row.partner_id = lookups.partner.pk
        if partner_at is not None and partner_at < width:
            named = text(cells[partner_at])
            if named:
                pk = lookups.partner_keys.get(named.lower())
                if pk is None:
                    known = ", ".join(p.slug for p in lookups.partners.values())
                    row.fail(f"“{named[:40]}” is not a known partner (known: {known})")
                else:
                    row.partner_id = pk
        if updated_at is not None and updated_at < width and _is_filled(cells[updated_at]):
            row.updated = _parse_updated(cells[updated_at])
            if row.updated is None:
                row.fail(
                    f"“{text(cells[updated_at])[:40]}” in the Updated column is not a date; "
                    "write dates as YYYY-MM-DD or DD/MM/YYYY"
                )
        if row.outcome == ERROR:
            row.message = f"Row {row.number}: {row.message}."
    return rows


def _parse_interests(named, lookups):
    """Return the ids of the interests a cell names, and the names that match none."""
    found, unknown = set(), []
    for token in SPLIT_INTERESTS.split(named) if named else ():
        if not token:
            continue
        pk = lookups.interest_keys.get(token.lower())
        if pk is None:
            unknown.append(token)
        else:
            found.add(pk)
    return frozenset(found), unknown


def _merge_duplicates(rows):
    """Merge rows for the same person into the first; return the first rows by key."""
    first_by_key = {}
    for row in rows:
        if row.outcome == ERROR:
            continue
        first = first_by_key.get(row.key)
        if first is None:
            first_by_key[row.key] = row
            continue
        row.outcome = MERGED
        row.supporter_id = None
        kept = []
        for name, value in row.values.items():
            current = first.values.get(name)
            if current is None:
                first.values[name] = value
            elif current != value:
                kept.append(FIELD_LABELS[name].lower())
        first.interest_ids |= row.interest_ids
        if row.updated and (first.updated is None or row.updated > first.updated):
            first.updated = row.updated
        message = f"Row {row.number}: same address as row {first.number}; merged into it"
        if kept:
            message += f" (kept row {first.number}'s {', '.join(kept)})"
        row.message = message + "."
    return first_by_key


# Columns rows are matched on, as SQL on PostgreSQL and as ORM lookups elsewhere;
# with the type their values are sent as.
MATCH_SQL = {
    "email_hash": ("{table}.email_hash", "text"),
    "LOWER(email)": ("LOWER({table}.email)", "text"),
    "supporter_id": ("{table}.supporter_id", "bigint"),
    "id": ("{table}.id", "bigint"),
}


def _matching(queryset, column, values):
    """Filter `queryset` to rows whose `column` (a MATCH_SQL key) is one of `values`.

    On PostgreSQL the values travel as one parameter, a newline-separated
    text the server splits, which spares building and parsing thousands of
    placeholders (addresses, hashes and ids never contain a newline).
    """
    if connection.vendor == "postgresql":
        table = connection.ops.quote_name(queryset.model._meta.db_table)
        expression, kind = MATCH_SQL[column]
        expression = expression.format(table=table)
        joined = "\n".join(map(str, values))
        # Only a fixed expression from MATCH_SQL is interpolated; values are a parameter.
        sql = f"{expression} = ANY(string_to_array(%s, E'\\n')::{kind}[])"
        return queryset.filter(RawSQL(sql, (joined,), BooleanField()))  # noqa: S611
    if column == "LOWER(email)":
        return queryset.alias(email_key=Lower("email")).filter(email_key__in=values)
    return queryset.filter(**{f"{column}__in": values})


@contextlib.contextmanager
def _bulk_work():
    """Pause the cyclic garbage collector while handling a whole file.

    Planning makes a few hundred thousand small objects and no reference
    cycles; left on, the collector rescans them all again and again (a third
    of the import's CPU time). They are freed by reference counting as usual.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _chunks(items, size=CHUNK):
    items = list(items)
    for start in range(0, len(items), size):
        yield items[start : start + size]


# What a plan reads of each existing supporter; "updated_at" is added when the
# options let a newer file row replace values (the only time it matters).
SUPPORTER_STATE = ("id", "email", "status", *PERSON_FIELDS)


@dataclass
class _State:
    """What the database holds about a file's addresses: all a plan depends on."""

    supporters: dict  # address key -> SUPPORTER_STATE values (+ updated_at)
    subscriptions: dict  # supporter id -> {interest id: (status, unsubscribed_at)}
    suppressed: dict  # email hash -> suppression reason

    def fingerprint(self):
        """Return a SHA-256 of this state; equal fingerprints mean equal plans.

        It covers each matched supporter (id, address, status, the fields an
        import may fill, and when they last changed if that is read), their
        subscriptions (topic and status) and the suppression entries that
        match the file's addresses. _sql_fingerprint computes the same text
        in the database.
        """
        supporters = []
        for state in sorted(self.supporters.values()):
            if len(state) > len(SUPPORTER_STATE):
                state = (*state[:-1], (state[-1] - EPOCH) // MICROSECOND)
            supporters.append(FIELD_SEPARATOR.join(map(str, state)))
        subscriptions = sorted(
            (supporter_id, interest_id, status)
            for supporter_id, topics in self.subscriptions.items()
            for interest_id, (status, _) in topics.items()
        )
        sections = [
            RECORD_SEPARATOR.join(supporters),
            RECORD_SEPARATOR.join(
                f"{supporter_id}{FIELD_SEPARATOR}{interest_id}{FIELD_SEPARATOR}{status}"
                for supporter_id, interest_id, status in subscriptions
            ),
            RECORD_SEPARATOR.join(
                f"{email_hash}{FIELD_SEPARATOR}{reason}"
                for email_hash, reason in sorted(self.suppressed.items())
            ),
        ]
        return hashlib.sha256(SECTION_SEPARATOR.join(sections).encode()).hexdigest()


# The fingerprint's text separates fields, records and sections with ASCII's
# own separators, which no address, name or status contains in practice.
FIELD_SEPARATOR, RECORD_SEPARATOR, SECTION_SEPARATOR = "\x1f", "\x1e", "\x1d"
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
MICROSECOND = datetime.timedelta(microseconds=1)


def _sql_fingerprint(keys, hashes, *, with_updated):
    """Lock the supporters `keys` name and return _State.fingerprint, computed by PostgreSQL.

    One statement reads and locks the same rows _look_up would, in id order,
    and returns only the digest, so nothing travels back row by row.
    """
    fields = ", ".join(f"s.{name}" for name in SUPPORTER_STATE)
    if with_updated:
        fields += ", (extract(epoch FROM s.updated_at) * 1000000)::bigint"
    with connection.cursor() as cursor:
        cursor.execute(
            # Only fixed column names are interpolated; values are parameters.
            f"""
            WITH matched AS MATERIALIZED (
                SELECT concat_ws(%(field)s, {fields}) AS line, s.id
                FROM crm_supporter AS s
                WHERE lower(s.email) = ANY(string_to_array(%(keys)s, E'\\n'))
                ORDER BY s.id
                FOR UPDATE
            )
            SELECT encode(sha256(convert_to(concat_ws(%(section)s,
                (SELECT coalesce(string_agg(line, %(record)s ORDER BY id), '') FROM matched),
                (SELECT coalesce(string_agg(
                    concat_ws(%(field)s, supporter_id, interest_id, status), %(record)s
                    ORDER BY supporter_id, interest_id), '')
                 FROM crm_subscription WHERE supporter_id IN (SELECT id FROM matched)),
                (SELECT coalesce(string_agg(
                    concat_ws(%(field)s, email_hash, reason), %(record)s
                    ORDER BY email_hash COLLATE "C"), '')
                 FROM crm_suppression
                 WHERE email_hash = ANY(string_to_array(%(hashes)s, E'\\n')))
            ), 'UTF8')), 'hex')
            """,  # noqa: S608
            {
                "keys": "\n".join(keys),
                "hashes": "\n".join(hashes),
                "field": FIELD_SEPARATOR,
                "record": RECORD_SEPARATOR,
                "section": SECTION_SEPARATOR,
            },
        )
        return cursor.fetchone()[0]


def _look_up(keys, hashes, *, with_updated=False, lock=False, progress=None) -> _State:
    """Return the database's state for these address keys and their hashes.

    With `lock`, lock the matched supporters (call inside a transaction) so
    the state stays true until the transaction ends.
    """
    suppressed = {}
    for chunk in _chunks(hashes):
        query = _matching(Suppression.objects.all(), "email_hash", chunk)
        suppressed.update(query.values_list("email_hash", "reason"))

    columns = (*SUPPORTER_STATE, "updated_at") if with_updated else SUPPORTER_STATE
    supporters = {}
    done = 0
    for chunk in _chunks(keys):
        query = _matching(Supporter.objects.all(), "LOWER(email)", chunk).order_by("pk")
        if lock:
            query = query.select_for_update()
        for state in query.values_list(*columns):
            supporters[normalize_email(state[1])] = state
        done += len(chunk)
        if progress:
            progress("checking", done, len(keys))

    subscriptions = {}
    for chunk in _chunks(state[0] for state in supporters.values()):
        query = _matching(Subscription.objects.all(), "supporter_id", chunk)
        for supporter_id, interest_id, status, unsubscribed_at in query.values_list(
            "supporter_id", "interest_id", "status", "unsubscribed_at"
        ):
            subscriptions.setdefault(supporter_id, {})[interest_id] = (status, unsubscribed_at)
    return _State(supporters=supporters, subscriptions=subscriptions, suppressed=suppressed)


def import_plan(
    *,
    table: Table,
    partner: PartnerOrganisation,
    interests=(),
    options: ImportOptions | None = None,
    progress=None,
) -> ImportPlan:
    """Return what importing `table` for `partner` would do, without changing anything."""
    options = options or ImportOptions()
    columns, ignored = match_columns(table.headers)
    lookups = _Lookups(partner=partner, interests=interests)
    rows = _read_rows(table, columns, lookups)
    first_by_key = _merge_duplicates(rows)

    hasher = email_hasher()
    for row in first_by_key.values():
        row.hash = hasher(row.key)
    state = _look_up(
        list(first_by_key),
        [row.hash for row in first_by_key.values()],
        with_updated=options.overwrite,
        progress=progress,
    )
    existing, subscriptions, suppressed = state.supporters, state.subscriptions, state.suppressed

    field_index = {name: SUPPORTER_STATE.index(name) for name in PERSON_FIELDS}
    unsubscribed = Subscription.Status.UNSUBSCRIBED
    for key, row in first_by_key.items():
        reason = suppressed.get(row.hash)
        found = existing.get(key)
        if found is not None:
            row.supporter_id = found[0]
        if found is not None and found[2] in SKIP_STATUS_REASONS:
            row.outcome = SKIPPED
            row.reason, words = SKIP_STATUS_REASONS[found[2]]
            row.message = f"Row {row.number}: {words}; left unchanged."
            continue
        if reason is not None:
            row.outcome, row.reason = SKIPPED, f"suppressed_{reason}"
            row.message = f"Row {row.number}: {SUPPRESSION_REASONS.get(reason, 'suppressed')}"
            row.message += "; not imported." if found is None else "; left unchanged."
            continue
        if found is None:
            row.outcome = NEW
            row.new_interest_ids = tuple(sorted(row.interest_ids))
            continue
        current = subscriptions.get(found[0], {})
        withdrawn = [
            (pk, current[pk][1])
            for pk in row.interest_ids
            if pk in current and current[pk][0] == unsubscribed
        ]
        if withdrawn:
            row.outcome, row.reason = SKIPPED, "unsubscribed_interest"
            names = ", ".join(
                lookups.interests[pk].name + (f" on {when:%d %b %Y}" if when else "")
                for pk, when in sorted(withdrawn)
            )
            row.message = f"Row {row.number}: unsubscribed from {names}; left unchanged."
            continue
        changes, kept = {}, []
        newer = options.overwrite and (row.updated is None or row.updated > found[-1])
        for name, value in row.values.items():
            held = found[field_index[name]]
            if held == value:
                continue
            if not held or newer:
                changes[name] = value
            else:
                kept.append(FIELD_LABELS[name].lower())
        if kept:
            why = "the file's row is older" if options.overwrite else "replacing is off"
            row.message = f"kept our {', '.join(kept)} ({why})"
        row.changes = changes
        row.new_interest_ids = tuple(sorted(pk for pk in row.interest_ids if pk not in current))
        row.outcome = UPDATED if changes or row.new_interest_ids else UNCHANGED

    counts = Counter(row.outcome for row in rows)
    plan = ImportPlan(
        rows=rows,
        columns={name: str(table.headers[at]).strip() for name, at in columns.items()},
        ignored_columns=ignored,
        interests=lookups.interests,
        partners=lookups.partners,
        state=state,
    )
    subscribing = sum(len(row.new_interest_ids) for row in first_by_key.values())
    plan.counts = {
        "rows": len(rows),
        **{outcome: counts.get(outcome, 0) for outcome in OUTCOME_LABELS},
        "subscriptions": subscribing,
        "skip_reasons": dict(Counter(row.reason for row in rows if row.outcome == SKIPPED)),
    }
    return plan


def _preview_digest(payload, fingerprint):
    """Return the digest a batch keeps of its plan and of the state the plan was made from."""
    return hashlib.sha256(payload + fingerprint.encode()).hexdigest()


# Preview ---------------------------------------------------------------------------


@dataclass
class ImportPreview:
    """A planned import: the file's table, the plan, and the batch that can confirm it."""

    table: Table
    plan: ImportPlan
    batch: ImportBatch | None
    duplicate_of: ImportBatch | None = None

    @property
    def confirmable(self):
        return self.batch is not None


def import_preview(
    *,
    data: bytes,
    file_name: str,
    partner: PartnerOrganisation,
    interests=(),
    options: ImportOptions | None = None,
    actor=None,
    keep: bool = True,
) -> ImportPreview:
    """Plan the import of `data` and keep it as a batch waiting for confirmation.

    Raise ImportRejected when the whole file is unusable. When rows have
    errors (and the options do not skip them), or `keep` is false, return
    the plan without a batch: nothing is stored.
    """
    options = options or ImportOptions()
    interests = list(interests)
    with _bulk_work():
        table = read_table(
            data=data,
            file_name=file_name,
            file_format=options.file_format,
            encoding=options.encoding,
        )
        options.file_format = table.file_format
        plan = import_plan(table=table, partner=partner, interests=interests, options=options)
        file_hash = hashlib.sha256(data).hexdigest()
        duplicate_of = (
            ImportBatch.objects.filter(
                file_hash=file_hash, partner=partner, status=ImportBatch.Status.DONE
            )
            .order_by("-finished_at")
            .first()
        )
        batch = None
        if keep and (not plan.has_errors or options.skip_invalid):
            # The confirm step applies this stored plan, not a new one, after
            # checking under locks that the state it was made from still holds.
            payload = plan.payload()
            with transaction.atomic():
                batch = ImportBatch.objects.create(
                    partner=partner,
                    file_name=file_name[:255],
                    file_hash=file_hash,
                    file_data=data,
                    plan_data=payload,
                    options=options.as_dict(),
                    status=ImportBatch.Status.PREVIEWED,
                    row_count=len(table.rows),
                    counts=plan.counts,
                    preview_digest=_preview_digest(payload, plan.state.fingerprint()),
                    report=plan.report(),
                    created_by=actor,
                )
                batch.interests.set(interests)
        plan.state = None  # read only for the digest; the preview page does not need it
    return ImportPreview(table=table, plan=plan, batch=batch, duplicate_of=duplicate_of)


def import_replan(*, batch: ImportBatch) -> ImportPreview:
    """Plan `batch`'s stored file again, as it would import now (for previews and reports)."""
    if not batch.file_data:
        raise ImportRefused("This batch no longer holds its file.")
    options = ImportOptions.from_dict(batch.options)
    with _bulk_work():
        table = read_table(
            data=bytes(batch.file_data),
            file_name=batch.file_name,
            file_format=options.file_format,
            encoding=options.encoding,
        )
        plan = import_plan(
            table=table,
            partner=batch.partner,
            interests=list(batch.interests.all()),
            options=options,
        )
    return ImportPreview(table=table, plan=plan, batch=batch)


# Confirm ---------------------------------------------------------------------------------


def progress_key(batch_id):
    return f"crm:import-progress:{batch_id}"


def import_progress(*, batch_id) -> dict:
    """Return the last progress a running confirm reported: stage, done and total rows."""
    return cache.get(progress_key(batch_id)) or {}


def _reporter(batch_id):
    def report(stage, done, total):
        cache.set(progress_key(batch_id), {"stage": stage, "done": done, "total": total}, 3600)

    return report


def import_enqueue(*, batch: ImportBatch, actor=None) -> bool:
    """Queue `batch` for a worker to confirm; return False if it was not waiting.

    The claim is a conditional update, so confirming twice queues once.
    """
    from crm import tasks

    with transaction.atomic():
        claimed = ImportBatch.objects.filter(
            pk=batch.pk, status=ImportBatch.Status.PREVIEWED
        ).update(status=ImportBatch.Status.QUEUED, confirmed_by=actor)
        if claimed:
            _reporter(batch.pk)("queued", 0, batch.row_count)
            tasks.import_confirm.delay_on_commit(batch.pk, actor.pk if actor else None)
    return bool(claimed)


REFUSALS = {
    ImportBatch.Status.QUEUED: "This import is already waiting to run.",
    ImportBatch.Status.RUNNING: "This import is already running.",
    ImportBatch.Status.DONE: "This import was already confirmed; it was not applied again.",
    ImportBatch.Status.FAILED: "This import failed; upload the file again to retry.",
    ImportBatch.Status.REVERTED: "This import was reverted; upload the file again to redo it.",
    ImportBatch.Status.EXPIRED: "This preview expired; upload the file again.",
}


def import_confirm(*, batch_id: int, actor=None) -> ImportBatch:
    """Apply a previewed batch exactly as previewed, in one transaction.

    Claim the batch (a batch is applied at most once), check the stored file
    still has the previewed hash, lock and read again what the preview read
    and refuse if any of it changed, then write the stored plan. On any
    failure nothing is changed, the batch is marked failed and ImportFailed
    says why. If the process dies instead, import_recover() queues the batch
    again.
    """
    now = timezone.now()
    claimed = ImportBatch.objects.filter(
        pk=batch_id, status__in=[ImportBatch.Status.PREVIEWED, ImportBatch.Status.QUEUED]
    ).update(
        status=ImportBatch.Status.RUNNING,
        started_at=now,
        **({"confirmed_by": actor} if actor else {}),
    )
    batch = ImportBatch.objects.select_related("partner").get(pk=batch_id)
    if not claimed:
        raise ImportRefused(REFUSALS.get(batch.status, "This import cannot be confirmed."))
    actor = actor or batch.confirmed_by
    progress = _reporter(batch.pk)
    # This claim, and no later one (import_recover may have queued the batch again).
    mine = ImportBatch.objects.filter(
        pk=batch.pk, status=ImportBatch.Status.RUNNING, started_at=now
    )
    try:
        with _bulk_work(), transaction.atomic():
            # The batch's row stays locked until the import commits or rolls back,
            # which tells import_recover() that someone is applying it.
            if not mine.select_for_update().exists():
                raise ImportRefused("This import was restarted after an interruption.")
            counts = _confirm(batch, actor=actor, progress=progress)
    except ImportRefused:
        raise
    except ImportFailed as error:
        message = error.messages[0]
    except IntegrityError:
        # The database's message names the clashing address: never show or log it.
        logger.warning("Import batch %s failed on a database constraint", batch.pk)
        message = (
            "Someone in this file was added to Rally by someone else while the import ran, "
            "so nothing was imported. Upload the file again to see a fresh preview."
        )
    except Exception as error:
        logger.error("Import batch %s failed: %s", batch.pk, type(error).__name__)
        message = (
            f"The import failed ({type(error).__name__}) and nothing was changed. Try again; "
            "if it keeps failing, tell whoever looks after Rally."
        )
    else:
        progress("done", batch.row_count, batch.row_count)
        batch.refresh_from_db()
        logger.info("Import batch %s applied: %s", batch.pk, counts)
        return batch
    mine.update(
        status=ImportBatch.Status.FAILED,
        error=message,
        finished_at=timezone.now(),
        file_data=None,
        plan_data=None,
    )
    progress("failed", 0, batch.row_count)
    raise ImportFailed(message)


# A batch whose worker dies this many times is failed rather than queued again:
# an import that kills its worker (for memory, say) would otherwise loop.
MAX_INTERRUPTIONS = 3


def import_recover() -> list[int]:
    """Queue again each import whose worker stopped, or whose task was lost; return their ids.

    A worker killed mid-import (a crash, a deploy, the out-of-memory killer)
    leaves its batch "running" while the database rolls the import back. A
    live import holds its batch's row lock until it commits, so a running
    batch that can be locked has nobody applying it. Confirming it again
    checks, as ever, that nothing changed since the preview.
    Run periodically (Celery beat); safe at any time, any number of times.
    """
    from crm import tasks

    recovered = []
    running = ImportBatch.objects.filter(status=ImportBatch.Status.RUNNING)
    for batch_id in running.values_list("pk", flat=True):
        with transaction.atomic():
            batch = (
                running.select_for_update(skip_locked=True)
                .filter(pk=batch_id)
                .only("pk", "counts", "row_count", "confirmed_by_id")
                .first()
            )
            if batch is None:
                continue  # being applied right now
            interruptions = (batch.counts or {}).get("interruptions", 0) + 1
            if interruptions > MAX_INTERRUPTIONS:
                logger.error("Import batch %s stopped %s times; failed", batch.pk, interruptions)
                ImportBatch.objects.filter(pk=batch.pk).update(
                    status=ImportBatch.Status.FAILED,
                    error=(
                        f"The import stopped {interruptions} times before finishing (its worker "
                        "was stopped, perhaps for lack of memory), so nothing was imported. "
                        "Split the file into smaller files and import each."
                    ),
                    finished_at=timezone.now(),
                    file_data=None,
                    plan_data=None,
                )
                _reporter(batch.pk)("failed", 0, batch.row_count)
                continue
            ImportBatch.objects.filter(pk=batch.pk).update(
                status=ImportBatch.Status.QUEUED,
                started_at=None,
                counts={**(batch.counts or {}), "interruptions": interruptions},
            )
            _reporter(batch.pk)("queued", 0, batch.row_count)
            tasks.import_confirm.delay_on_commit(batch.pk, batch.confirmed_by_id)
            recovered.append(batch.pk)
    # A waiting batch's progress note is kept beside the broker's queue (in
    # Redis, for an hour). Without it, the queued task may have been lost with
    # the broker's data (Redis restarted empty): queue it again. A second task
    # is harmless, as only one can claim the batch.
    waiting = ImportBatch.objects.filter(status=ImportBatch.Status.QUEUED)
    for pk, rows, actor_id in waiting.values_list("pk", "row_count", "confirmed_by_id"):
        if not import_progress(batch_id=pk):
            _reporter(pk)("queued", 0, rows)
            tasks.import_confirm.delay_on_commit(pk, actor_id)
            recovered.append(pk)
    if recovered:
        logger.warning("Import batches %s were interrupted or lost; queued again", recovered)
    return recovered


def _confirm(batch, *, actor, progress):
    data = bytes(batch.file_data or b"")
    if hashlib.sha256(data).hexdigest() != batch.file_hash:
        raise ImportFailed(
            "The stored file is not the one that was previewed, so nothing was imported. "
            "Upload it again."
        )
    payload = bytes(batch.plan_data or b"")
    if not payload:
        raise ImportFailed(
            "This preview no longer holds its plan, so nothing was imported. Upload the file "
            "again to see a fresh preview."
        )
    options = ImportOptions.from_dict(batch.options)
    if connection.vendor == "postgresql":
        # Suppressions added mid-import wait until it commits, so no address
        # suppressed meanwhile is subscribed (webhooks simply retry later).
        with connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {Suppression._meta.db_table} IN SHARE MODE")
    plan = json.loads(zlib.decompress(payload))
    hasher = email_hasher()
    plan["hashes"] = [hasher(key) for key in plan["keys"]]
    # Read, and lock, what the preview read: the same state gives the same
    # plan, so the stored one is applied as it stands.
    progress("checking", 0, batch.row_count)
    if connection.vendor == "postgresql":
        fingerprint = _sql_fingerprint(plan["keys"], plan["hashes"], with_updated=options.overwrite)
    else:
        state = _look_up(plan["keys"], plan["hashes"], with_updated=options.overwrite, lock=True)
        fingerprint = state.fingerprint()
    if _preview_digest(payload, fingerprint) != batch.preview_digest:
        raise ImportFailed(
            "Supporters in this file changed since the preview (someone unsubscribed, was "
            "edited, suppressed or added), so nothing was imported. Upload the file again to "
            "see a fresh preview."
        )
    now = timezone.now()
    written = _apply(plan, batch=batch, actor=actor, now=now, progress=progress)
    ImportBatch.objects.filter(pk=batch.pk).update(
        status=ImportBatch.Status.DONE,
        counts={**batch.counts, **written},
        finished_at=timezone.now(),
        file_data=None,
        plan_data=None,
        error="",
    )
    AuditEvent.objects.create(
        kind=AuditEvent.Kind.IMPORTED,
        actor=actor,
        source=f"import batch {batch.pk}",
        detail={"batch": batch.pk, "partner": batch.partner.slug, **written},
    )
    return written


def _apply(plan, *, batch, actor, now, progress):
    """Write a stored plan (ImportPlan.payload): supporters, history, subscriptions, consent."""
    writer = _writer()
    creating, changing = plan["new"], plan["changed"]
    updating = [(pk, changes) for pk, changes, _, _ in changing if changes]
    subscribing = sum(len(entry[-1]) for entry in creating) + sum(
        len(entry[-1]) for entry in changing
    )
    total = len(creating) + len(updating) + subscribing
    done = 0
    history = {
        "now": now,
        "reason": f"partner import {batch.pk}"[:100],
        "actor_id": actor.pk if actor else None,
    }
    # (supporter id, interest id, partner id) for each subscription to create.
    grants = []

    fixed = {
        "source": Supporter.Source.PARTNER_IMPORT,
        "status": Supporter.Status.ACTIVE,
        "import_batch_id": batch.pk,
        "notes": "",
        "link_version": 1,
        "created_at": now,
        "updated_at": now,
    }
    hashes = plan["hashes"]
    for chunk in _chunks(creating):
        ids = writer.insert_supporters(
            [(entry[1], hashes[entry[0]], *entry[2:-1]) for entry in chunk], fixed=fixed
        )
        writer.write_history(ids, kind="+", **history)
        for pk, entry in zip(ids, chunk, strict=True):
            partner_id = entry[-2]
            grants.extend((pk, interest_id, partner_id) for interest_id in entry[-1])
        done += len(chunk)
        progress("writing", done, total)

    for chunk in _chunks(updating):
        writer.update_supporters(chunk, now=now)
        writer.write_history([pk for pk, _ in chunk], kind="~", **history)
        done += len(chunk)
        progress("writing", done, total)
    for pk, _, partner_id, interest_ids in changing:
        grants.extend((pk, interest_id, partner_id) for interest_id in interest_ids)
    # In supporter order, rows land in the indexes (and their checks find
    # their supporters) in order rather than all over the table.
    grants.sort()

    label = "" if actor else "partner import command"
    for chunk in _chunks(grants):
        writer.subscribe(
            chunk, batch_id=batch.pk, actor_id=history["actor_id"], label=label, now=now
        )
        done += len(chunk)
        progress("writing", done, total)
    return {
        "created": len(creating),
        "changed": len(updating),
        "subscribed": len(grants),
        "consent_records": len(grants),
    }


# What differs between the new supporters of a batch; what they share is
# added by the writer (`fixed` in _apply).
NEW_COLUMNS = ("email", "email_hash", *PERSON_FIELDS, "partner_id")
SUBSCRIPTION_COLUMNS = (
    "supporter_id",
    "interest_id",
    "status",
    "subscribed_at",
    "unsubscribed_at",
    "updated_at",
)
CONSENT_COLUMNS = (
    "supporter_id",
    "interest_id",
    "action",
    "method",
    "lawful_basis",
    "wording",
    "wording_version",
    "partner_id",
    "import_batch_id",
    "actor_id",
    "actor_label",
    "created_at",
)
HISTORY_FIELDS = (
    "email",
    "first_name",
    "last_name",
    "postcode",
    "country",
    "phone",
    "organisation",
    "source",
    "status",
    "notes",
    "created_at",
    "partner_id",
    "import_batch_id",
)
HISTORY_COLUMNS = (
    "id",
    *HISTORY_FIELDS,
    "history_date",
    "history_change_reason",
    "history_type",
    "history_user_id",
)


class _DjangoWriter:
    """Bulk writes through the ORM: any database Django supports."""

    def insert_supporters(self, rows, *, fixed):
        created = Supporter.objects.bulk_create(
            [Supporter(**dict(zip(NEW_COLUMNS, values, strict=True)), **fixed) for values in rows]
        )
        return [supporter.pk for supporter in created]

    def update_supporters(self, changes, *, now):
        by_fields = {}
        for pk, values in changes:
            by_fields.setdefault(tuple(sorted(values)), []).append((pk, values))
        for names, group in by_fields.items():
            objs = [Supporter(pk=pk, updated_at=now, **values) for pk, values in group]
            Supporter.objects.bulk_update(objs, [*names, "updated_at"])

    def write_history(self, ids, *, kind, now, reason, actor_id):
        """Record the current state of supporters `ids` in their history (simple-history)."""
        states = Supporter.objects.filter(pk__in=ids).values_list("pk", *HISTORY_FIELDS)
        self.insert(
            Supporter.history.model,
            HISTORY_COLUMNS,
            [(*state, now, reason, kind, actor_id) for state in states],
        )

    def subscribe(self, grants, *, batch_id, actor_id, label, now):
        """Subscribe each (supporter, interest, partner) and write its consent record."""
        bases = dict(
            PartnerOrganisation.objects.filter(
                pk__in={partner_id for _, _, partner_id in grants}
            ).values_list("pk", "lawful_basis")
        )
        subscribed = Subscription.Status.SUBSCRIBED
        self.insert(
            Subscription,
            SUBSCRIPTION_COLUMNS,
            [(pk, interest_id, subscribed, now, None, now) for pk, interest_id, _ in grants],
        )
        granted, method = ConsentRecord.Action.GRANTED, ConsentRecord.Method.PARTNER_IMPORT
        shared = (batch_id, actor_id, label, now)
        self.insert(
            ConsentRecord,
            CONSENT_COLUMNS,
            [
                (pk, interest_id, granted, method, bases[partner_id], "", "", partner_id, *shared)
                for pk, interest_id, partner_id in grants
            ],
        )

    def insert(self, model, columns, rows):
        model.objects.bulk_create(
            [model(**dict(zip(columns, values, strict=True))) for values in rows]
        )


def _id_list(values):
    """Return `values` as one text parameter, for `= ANY(string_to_array(%s, ',')::bigint[])`."""
    return ",".join(map(str, values))


class _PostgresWriter(_DjangoWriter):
    """Bulk writes with COPY and set-based SQL: several times faster than the ORM.

    Rows are derived in the database where they can be (history from the
    supporter rows, subscriptions and consent records from one list of ids
    per 10,000), so only the new supporters and the filled fields travel
    from Python row by row.
    """

    def _copy(self, table, columns, rows):
        # Binary COPY: values go as the columns' own types, which spares
        # formatting and escaping every value as text (most of the Python time).
        quote = connection.ops.quote_name
        names = ", ".join(quote(column) for column in columns)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT attname, atttypid FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
                [quote(table)],
            )
            types = dict(cursor.fetchall())
            with cursor.cursor.copy(
                f"COPY {quote(table)} ({names}) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types([types[column] for column in columns])
                for row in rows:
                    copy.write_row(row)

    def insert_supporters(self, rows, *, fixed):
        # Take ids from the table's own sequence, then COPY the rows with them.
        table = Supporter._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
                [table, len(rows)],
            )
            ids = [pk for (pk,) in cursor.fetchall()]
        shared = tuple(fixed.values())
        self._copy(
            table,
            ("id", *NEW_COLUMNS, *fixed),
            [(pk, *values, *shared) for pk, values in zip(ids, rows, strict=True)],
        )
        return ids

    def update_supporters(self, changes, *, now):
        quote = connection.ops.quote_name
        table = quote(Supporter._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE TEMPORARY TABLE IF NOT EXISTS crm_import_changes ("
                "id bigint PRIMARY KEY, "
                + ", ".join(f"{quote(name)} text" for name in PERSON_FIELDS)
                + ") ON COMMIT DROP"
            )
            cursor.execute("TRUNCATE crm_import_changes")
        self._copy(
            "crm_import_changes",
            ("id", *PERSON_FIELDS),
            [(pk, *(values.get(name) for name in PERSON_FIELDS)) for pk, values in changes],
        )
        assignments = ", ".join(
            f"{quote(name)} = COALESCE(c.{quote(name)}, s.{quote(name)})" for name in PERSON_FIELDS
        )
        with connection.cursor() as cursor:
            cursor.execute(
                # Only quoted column names are interpolated; values are parameters.
                f"UPDATE {table} AS s SET {assignments}, updated_at = %s "  # noqa: S608
                "FROM crm_import_changes AS c WHERE s.id = c.id",
                [now],
            )

    def write_history(self, ids, *, kind, now, reason, actor_id):
        quote = connection.ops.quote_name
        fields = ", ".join(quote(name) for name in HISTORY_FIELDS)
        with connection.cursor() as cursor:
            cursor.execute(
                # Only quoted table and column names are interpolated.
                f"INSERT INTO {quote(Supporter.history.model._meta.db_table)} "  # noqa: S608
                f"({', '.join(quote(name) for name in HISTORY_COLUMNS)}) "
                f"SELECT id, {fields}, %s, %s, %s, %s FROM {quote(Supporter._meta.db_table)} "
                "WHERE id = ANY(string_to_array(%s, ',')::bigint[])",
                [now, reason, kind, actor_id, _id_list(ids)],
            )

    def subscribe(self, grants, *, batch_id, actor_id, label, now):
        # One statement writes the subscriptions and, from the same rows, their
        # consent records, with the partner's lawful basis as it is now. A
        # missing partner leaves the basis NULL, which the column refuses.
        supporter_ids, interest_ids, partner_ids = zip(*grants, strict=True)
        with connection.cursor() as cursor:
            cursor.execute(
                """
                WITH granted AS (
                    SELECT * FROM unnest(
                        string_to_array(%(supporters)s, ',')::bigint[],
                        string_to_array(%(interests)s, ',')::bigint[],
                        string_to_array(%(partners)s, ',')::bigint[]
                    ) AS g (supporter_id, interest_id, partner_id)
                ), subscribed AS (
                    INSERT INTO crm_subscription (
                        supporter_id, interest_id, status, subscribed_at, unsubscribed_at,
                        updated_at
                    )
                    SELECT supporter_id, interest_id, %(subscribed)s, %(now)s, NULL, %(now)s
                    FROM granted
                )
                INSERT INTO crm_consentrecord (
                    supporter_id, interest_id, action, method, lawful_basis, wording,
                    wording_version, partner_id, import_batch_id, actor_id, actor_label,
                    created_at
                )
                SELECT g.supporter_id, g.interest_id, %(granted)s, %(method)s, p.lawful_basis,
                    '', '', g.partner_id, %(batch)s, %(actor)s, %(label)s, %(now)s
                FROM granted AS g LEFT JOIN crm_partnerorganisation AS p ON p.id = g.partner_id
                """,
                {
                    "supporters": _id_list(supporter_ids),
                    "interests": _id_list(interest_ids),
                    "partners": _id_list(partner_ids),
                    "subscribed": Subscription.Status.SUBSCRIBED,
                    "granted": ConsentRecord.Action.GRANTED,
                    "method": ConsentRecord.Method.PARTNER_IMPORT,
                    "batch": batch_id,
                    "actor": actor_id,
                    "label": label,
                    "now": now,
                },
            )

    def insert(self, model, columns, rows):
        self._copy(model._meta.db_table, columns, rows)


def _writer():
    return _PostgresWriter() if connection.vendor == "postgresql" else _DjangoWriter()


# Revert -----------------------------------------------------------------------------


def import_revert(*, batch: ImportBatch, actor=None) -> dict:
    """Undo what `batch` created that nothing has touched since; return what was undone.

    Supporters the batch created and nobody has touched since are deleted
    with their consent records (those were the batch's own grants): we should
    not keep people a partner shared by mistake. For everyone else, each
    subscription the batch created is removed if it is still as the batch
    left it, and a "withdrawn" consent record naming the batch is appended,
    so the consent history shows both the grant and its reversal. Field
    values the batch filled in on existing supporters are kept.
    """
    with transaction.atomic():
        batch = ImportBatch.objects.select_for_update().get(pk=batch.pk)
        if batch.status != ImportBatch.Status.DONE:
            raise ImportRefused(
                f"Only a completed import can be reverted; this one is "
                f"“{batch.get_status_display()}”."
            )
        grants = list(
            ConsentRecord.objects.filter(
                import_batch=batch, action=ConsentRecord.Action.GRANTED
            ).values_list("supporter_id", "interest_id", "created_at")
        )
        created = set(Supporter.objects.filter(import_batch=batch).values_list("pk", flat=True))
        involved = sorted(created | {supporter_id for supporter_id, _, _ in grants})
        for chunk in _chunks(involved):
            list(
                Supporter.objects.filter(pk__in=chunk)
                .order_by("pk")
                .select_for_update()
                .values_list("pk")
            )
        touched = _touched_supporters(created, batch)
        deleting = created - touched

        # A grant is still the batch's if it is the latest record for its topic.
        latest = {}
        for chunk in _chunks(involved):
            for supporter_id, interest_id, when in (
                ConsentRecord.objects.filter(supporter_id__in=chunk)
                .values("supporter_id", "interest_id")
                .annotate(latest=Max("created_at"))
                .values_list("supporter_id", "interest_id", "latest")
            ):
                latest[(supporter_id, interest_id)] = when
        candidates = {
            (supporter_id, interest_id): when
            for supporter_id, interest_id, when in grants
            if supporter_id not in deleting and latest.get((supporter_id, interest_id)) == when
        }
        withdraw = []
        for chunk in _chunks(candidates):
            supporter_ids = {supporter_id for supporter_id, _ in chunk}
            for pk, supporter_id, interest_id, status, subscribed_at in Subscription.objects.filter(
                supporter_id__in=supporter_ids
            ).values_list("pk", "supporter_id", "interest_id", "status", "subscribed_at"):
                when = candidates.get((supporter_id, interest_id))
                if (
                    when is not None
                    and status == Subscription.Status.SUBSCRIBED
                    and subscribed_at == when
                ):
                    withdraw.append((pk, supporter_id, interest_id))

        now = timezone.now()
        writer = _writer()
        for chunk in _chunks(withdraw):
            Subscription.objects.filter(pk__in=[pk for pk, _, _ in chunk]).delete()
            writer.insert(
                ConsentRecord,
                CONSENT_COLUMNS,
                [
                    (
                        supporter_id,
                        interest_id,
                        ConsentRecord.Action.WITHDRAWN,
                        ConsentRecord.Method.PARTNER_IMPORT,
                        batch.partner.lawful_basis,
                        "",
                        "",
                        batch.partner_id,
                        batch.pk,
                        actor.pk if actor else None,
                        f"import {batch.pk} reverted",
                        now,
                    )
                    for _, supporter_id, interest_id in chunk
                ],
            )
        history = Supporter.history.model
        for chunk in _chunks(sorted(deleting)):
            # Raw deletes: the ORM's cascade would load and signal each row.
            ConsentRecord.objects.filter(supporter_id__in=chunk)._erase()
            Subscription.objects.filter(supporter_id__in=chunk)._raw_delete(connection.alias)
            history.objects.filter(id__in=chunk)._raw_delete(connection.alias)
            Supporter.objects.filter(pk__in=chunk)._raw_delete(connection.alias)

        undone = {
            "deleted_supporters": len(deleting),
            "kept_supporters": len(touched),
            "withdrawn_subscriptions": len(withdraw),
            "kept_subscriptions": len(grants)
            - len(withdraw)
            - sum(1 for supporter_id, _, _ in grants if supporter_id in deleting),
        }
        batch.status = ImportBatch.Status.REVERTED
        batch.reverted_at = now
        batch.reverted_by = actor
        batch.counts = {**batch.counts, "reverted": undone}
        batch.save(update_fields=["status", "reverted_at", "reverted_by", "counts"])
        AuditEvent.objects.create(
            kind=AuditEvent.Kind.IMPORT_REVERTED,
            actor=actor,
            source=f"import batch {batch.pk}",
            detail={"batch": batch.pk, "partner": batch.partner.slug, **undone},
        )
    return undone


def _touched_supporters(ids, batch):
    """Return which of `ids` (created by `batch`) anything else has changed or used since."""
    touched = set()
    finished = batch.finished_at
    history = Supporter.history.model
    for chunk in _chunks(sorted(ids)):
        touched.update(
            Supporter.objects.filter(pk__in=chunk)
            .exclude(status=Supporter.Status.ACTIVE, updated_at__lte=finished)
            .values_list("pk", flat=True)
        )
        touched.update(
            ConsentRecord.objects.filter(supporter_id__in=chunk)
            .exclude(import_batch=batch, action=ConsentRecord.Action.GRANTED)
            .values_list("supporter_id", flat=True)
        )
        touched.update(
            history.objects.filter(id__in=chunk, history_date__gt=finished).values_list(
                "id", flat=True
            )
        )
        touched.update(
            Supporter.tags.through.objects.filter(supporter_id__in=chunk).values_list(
                "supporter_id", flat=True
            )
        )
        # Anything else that points at a supporter (segment memberships, audit
        # events, and whatever mailings keep: deliveries, tracking) counts as use.
        for relation in Supporter._meta.related_objects:
            model = relation.related_model
            if model in (Subscription, ConsentRecord) or relation.many_to_many:
                continue
            touched.update(
                model._base_manager.filter(**{f"{relation.field.name}__in": chunk}).values_list(
                    relation.field.attname, flat=True
                )
            )
    return touched


# Housekeeping --------------------------------------------------------------------------


def import_expire_previews(*, older_than: datetime.timedelta | None = None) -> int:
    """Forget the files of previews nobody confirmed; return how many expired."""
    if older_than is None:
        older_than = datetime.timedelta(hours=settings.RALLY_IMPORT_PREVIEW_HOURS)
    return ImportBatch.objects.filter(
        status=ImportBatch.Status.PREVIEWED, created_at__lt=timezone.now() - older_than
    ).update(status=ImportBatch.Status.EXPIRED, file_data=None, plan_data=None)
