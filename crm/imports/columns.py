"""
Matching a file's heading row to the supporter fields an import fills: Rally's
guesses (the partner's remembered choices, then synonyms) and the mapping the
staff member settles on, as {heading: field or ""}.
"""

import re

from crm.exceptions import ImportRejected
from crm.imports.files import Table, _is_filled

# Heading (lower-cased, letters and digits only) -> the field it fills.
COLUMN_ALIASES = {
    "email": "email emailaddress emailaddr mail mailaddress primaryemail contactemail "
    "personalemail emails",
    "first_name": "firstname first forename forenames givenname givennames fname christianname",
    "last_name": "lastname last surname familyname lname secondname",
    "full_name": "name fullname contactname yourname supportername",
    "postcode": "postcode postalcode zip zipcode postcodezip zippostcode",
    "country": "country countrycode countryname nation countryregion",
    "phone": "phone telephone phonenumber tel mobile mobilenumber mobilephone telephonenumber "
    "phoneno mobileno cellphone",
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
# What partners' files often hold that an import does not take, and why:
# shown beside the column when its fields are matched.
NOT_IMPORTED = {
    "tags tag labels label": "Rally does not import tags; build a segment from the import instead.",
    "consentdate optindate dateofconsent consentgiven consentedat consented optin optedin "
    "signupdate signedup dateadded": "The consent record is dated when you confirm the import "
    "and names the partner; the partner keeps their own consent dates.",
}
NOT_IMPORTED_NOTES = {
    alias: note for aliases, note in NOT_IMPORTED.items() for alias in aliases.split()
}
# Supporter fields an import fills or updates, in display order.
PERSON_FIELDS = ("first_name", "last_name", "postcode", "country", "phone", "organisation")
# What a new supporter holds in a field the file leaves empty.
NEW_DEFAULTS = dict.fromkeys(PERSON_FIELDS, "") | {"country": "GB"}
# The heading row of the CSV template staff can download, with one made-up row.
TEMPLATE_FIELDS = (
    "email",
    "first_name",
    "last_name",
    "postcode",
    "country",
    "phone",
    "organisation",
    "interests",
    "updated",
)
TEMPLATE_EXAMPLE = {
    "email": "jo.example@example.org",
    "first_name": "Jo",
    "last_name": "Example",
    "postcode": "N1 9GU",
    "country": "GB",
    "phone": "020 7946 0000",
    "organisation": "Example Community Trust",
    "updated": "2026-01-31",
}


class ColumnsRejected(ImportRejected):
    """No column holds email addresses, or two hold the same field.

    The file itself was read: `table` holds it and `mapping` the guess that
    failed, so staff can match the columns themselves without uploading it again.
    """

    def __init__(self, message, *, table=None, mapping=None):
        super().__init__(message)
        self.table = table
        self.mapping = mapping or {}


def heading_key(heading):
    return re.sub(r"[^a-z0-9]", "", str(heading or "").lower())


def _heading_text(heading):
    return str(heading).strip()


def guess_columns(headers, *choices) -> dict:
    """Return {heading: field or ""} for each filled heading of a file.

    `choices` are earlier answers ({heading: field or ""}), the most
    important first: this import's, then the partner's remembered ones
    (PartnerOrganisation.column_mapping). Each is looked up by the exact
    heading, then ignoring case, spaces and punctuation; a heading none of
    them names gets Rally's synonym for it, or "" (ignored). Without an email
    column so far, the first unnamed heading with "email" in it is taken for it.
    """
    keyed = []
    for choice in choices:
        valid = {
            heading: field
            for heading, field in (choice or {}).items()
            if field == "" or field in FIELD_LABELS
        }
        keyed.append((valid, {heading_key(heading): field for heading, field in valid.items()}))
    mapping, unanswered = {}, []
    for heading in headers:
        if not _is_filled(heading):
            continue
        text = _heading_text(heading)
        if text in mapping:
            continue
        key = heading_key(text)
        for exact, by_key in keyed:
            if text in exact:
                mapping[text] = exact[text]
                break
            if key in by_key:
                mapping[text] = by_key[key]
                break
        else:
            mapping[text] = HEADING_TO_FIELD.get(key, "")
            if not mapping[text]:
                unanswered.append(text)
    if "email" not in mapping.values():
        # "Contact E-mail Address", "Supporter email": the one column an import
        # cannot do without, named at length.
        for text in unanswered:
            if "email" in heading_key(text):
                mapping[text] = "email"
                break
    return mapping


def match_columns(headers, mapping=None):
    """Return ({field: column index}, [ignored headings]) for a heading row.

    `mapping` ({heading: field or ""}, as guess_columns returns) says what
    each heading holds; without it Rally's synonyms decide. Raise
    ImportRejected when no column holds email addresses or two columns claim
    the same field.
    """
    if mapping is None:
        mapping = guess_columns(headers)
    columns, ignored = {}, []
    for index, heading in enumerate(headers):
        if not _is_filled(heading):
            continue
        text = _heading_text(heading)
        name = mapping.get(text) or ""
        if name not in FIELD_LABELS:
            ignored.append(text)
            continue
        if name in columns:
            first = _heading_text(headers[columns[name]])
            raise ImportRejected(
                f"Both “{first}” and “{text}” look like the {FIELD_LABELS[name]} column; keep "
                "one of them and upload again, or match only one of them to "
                f"{FIELD_LABELS[name]}."
            )
        columns[name] = index
    if "email" not in columns:
        found = ", ".join(f"“{_heading_text(h)}”" for h in headers if _is_filled(h)) or "none"
        raise ImportRejected(
            "The file has no email column. The first row must name the columns, and one "
            "must hold email addresses (headed Email, E-mail, Email address or similar), or "
            f"be matched to Email. Headings found: {found}."
        )
    return columns, ignored


def _example(value):
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()[:60]


def column_examples(table: Table, *, limit=3, scan=200) -> list:
    """Return [(heading, [up to `limit` different values])] for each filled heading.

    The values come from the first `scan` data rows, so staff can see what a
    column holds while they match it.
    """
    positions = {}
    for index, heading in enumerate(table.headers):
        if _is_filled(heading):
            positions.setdefault(_heading_text(heading), index)
    examples = {text: [] for text in positions}
    for cells in table.rows[:scan]:
        width = len(cells)
        for text, at in positions.items():
            found = examples[text]
            if len(found) < limit and at < width and _is_filled(cells[at]):
                value = _example(cells[at])
                if value not in found:
                    found.append(value)
    return list(examples.items())


def not_imported_note(heading) -> str:
    """Return why Rally leaves a column like `heading` out, or ""."""
    return NOT_IMPORTED_NOTES.get(heading_key(heading), "")


def template_rows(interests) -> tuple[list, list]:
    """Return the CSV template's headings and its one made-up row (at example.org)."""
    example = {**TEMPLATE_EXAMPLE, "interests": ";".join(i.slug for i in interests[:2])}
    return (
        [FIELD_LABELS[name] for name in TEMPLATE_FIELDS],
        [example[name] for name in TEMPLATE_FIELDS],
    )
