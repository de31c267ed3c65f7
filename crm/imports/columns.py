"""
Matching a file's heading row to the supporter fields an import fills.
"""

import re

from crm.exceptions import ImportRejected
from crm.imports.files import _is_filled

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
