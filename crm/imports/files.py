"""
Reading import files: the size limit, the format (from the name or the first
bytes), the text encoding, and the cells of a CSV, TSV, XLSX or JSON file as
a Table. Nothing here touches the database.
"""

import csv
import io
import json
import re
import zipfile
from dataclasses import dataclass

from django.conf import settings

from crm.exceptions import ImportRejected

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
