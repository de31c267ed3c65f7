"""
Rows: each data row of a file read into a Row, its cells checked against the
reference data (addresses, names, countries, interests, partners, dates), and
rows for the same address merged into the first. The outcomes a row can have
are named here.
"""

import datetime
import re

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from django.utils import timezone
from django_countries import countries

from crm.imports.columns import FIELD_LABELS, PERSON_FIELDS, heading_key
from crm.imports.files import _is_filled
from crm.models import CampaignInterest, PartnerOrganisation, Supporter

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
