from django.db import migrations

# Prefix searches in the supporter admin compare LOWER(column) with LIKE 'term%'.
# PostgreSQL can use a btree index for that only with the pattern operator
# class; SQLite has no such thing and scans, which is fine at its sizes.
INDEXES = {
    "crm_supporter_email_prefix": "LOWER(email) varchar_pattern_ops",
    "crm_supporter_last_name_prefix": "LOWER(last_name) varchar_pattern_ops",
    "crm_supporter_first_name_prefix": "LOWER(first_name) varchar_pattern_ops",
    "crm_supporter_postcode_prefix": "postcode varchar_pattern_ops",
    # istartswith, as segment rules use for postcode prefixes, compares UPPER(col::text).
    "crm_supporter_postcode_upper_prefix": "UPPER(postcode::text) text_pattern_ops",
}


def create_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, expression in INDEXES.items():
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON crm_supporter ({expression})")


def drop_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("crm", "0003_roles")]

    operations = [migrations.RunPython(create_indexes, drop_indexes)]
