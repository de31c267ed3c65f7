"""Every write to a consent table goes through crm's services (STYLE.md C16).

Reads the sources of crm/ and mailings/ (not migrations, not crm/services/)
and finds what writes Subscription, ConsentRecord, Suppression or AuditEvent:

- a write method called on the model (`.objects.create`, `bulk_create`,
  `.update(`, `.delete(`, `_raw_delete`, `_erase`, ... anywhere in the chain);
- an instance built (`ConsentRecord(...)`), which is only built to be saved;
- the model handed to a helper that inserts or copies rows (`writer.insert(Subscription, ...)`);
- raw SQL: a function whose strings INSERT, UPDATE, DELETE or COPY and which
  names the model's table (`Model._meta.db_table` or the table's name).

A place not in ALLOWED fails the test, so a new route cannot appear
unnoticed. The list should only shrink: each entry says why it is still there.
What this cannot see: `.save()` or `.delete()` on an instance fetched earlier,
and writes through a model passed in a variable.
"""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = {"Subscription", "ConsentRecord", "Suppression", "AuditEvent"}
TABLES = {"crm_subscription", "crm_consentrecord", "crm_suppression", "crm_auditevent"}
WRITE_METHODS = {
    "create",
    "bulk_create",
    "bulk_update",
    "get_or_create",
    "update_or_create",
    "update",
    "delete",
    "_raw_delete",
    "_erase",
    "_do_insert",
    "_batched_insert",
}
# A write statement; not a row lock (FOR UPDATE, FOR NO KEY UPDATE), which only reads.
SQL_WRITE = re.compile(r"\b(INSERT\s+INTO|(?<!FOR )(?<!KEY )UPDATE|DELETE\s+FROM|COPY)\b")

# (path, model): why this write is still outside crm/services/.
ALLOWED = {
    ("crm/demo.py", "Subscription"): "demo data for development; bulk inserts a fake history",
    ("crm/demo.py", "ConsentRecord"): "demo data for development; bulk inserts a fake history",
    ("crm/demo.py", "Suppression"): "demo data for development; bulk inserts a fake history",
    ("crm/exports.py", "AuditEvent"): "an export's audit event; to move to audit_event_add",
    ("crm/imports/confirm.py", "AuditEvent"): "the import's one audit event per batch; to move",
    ("crm/imports/writers.py", "Subscription"): "the import's bulk grants (ORM writer); to move",
    ("crm/imports/writers.py", "ConsentRecord"): "the import's bulk grants (ORM writer); to move",
    ("crm/sql.py", "Subscription"): "crm's raw statements (C17), run only by crm services "
    "(withdrawal) and the import writers",
    ("crm/sql.py", "ConsentRecord"): "crm's raw statements (C17), run only by crm services "
    "(withdrawal) and the import writers",
    ("crm/sql.py", "AuditEvent"): "crm's raw statements (C17): the withdrawal's audit event, "
    "run only by crm services",
}


def _sources():
    for app in ("crm", "mailings"):
        for path in sorted((ROOT / app).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if "/migrations/" in relative or relative.startswith("crm/services/"):
                continue
            yield relative, path.read_text()


def _aliases(tree):
    """Return {local name: model} for the four models as this module imports them."""
    names = {model: model for model in MODELS}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name in MODELS:
                    names[alias.asname or alias.name] = alias.name
    return names


def _model_in(node, aliases):
    """Return the consent model an expression chain starts from or passes through, if any."""
    while True:
        if isinstance(node, ast.Name):
            return aliases.get(node.id)
        if isinstance(node, ast.Attribute):
            if node.attr in MODELS:
                return node.attr
            node = node.value
        elif isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Subscript):
            node = node.value
        else:
            return None


def _call_name(func):
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


def _tables_named(node, aliases):
    """Return the consent models whose table `node` names (`Model._meta.db_table`, or the name)."""
    found = set()
    for child in ast.walk(node):
        if (
            isinstance(child, ast.Attribute)
            and child.attr == "db_table"
            and isinstance(child.value, ast.Attribute)
            and child.value.attr == "_meta"
        ):
            model = _model_in(child.value.value, aliases)
            if model:
                found.add(model)
        elif isinstance(child, ast.Constant) and isinstance(child.value, str):
            for table in TABLES:
                if table in child.value:
                    found.add(next(m for m in MODELS if f"crm_{m.lower()}" == table))
    return found


def _writes_sql(node):
    return any(
        isinstance(child, ast.Constant)
        and isinstance(child.value, str)
        and SQL_WRITE.search(child.value)
        for child in ast.walk(node)
    )


def _writes_in(tree):
    """Return {model: [line, ...]} for the consent-table writes in one module's tree."""
    aliases = _aliases(tree)
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _call_name(node.func)
            if isinstance(node.func, ast.Name) and node.func.id in aliases:
                found.setdefault(aliases[node.func.id], []).append(node.lineno)
            elif isinstance(node.func, ast.Attribute) and name in WRITE_METHODS:
                model = _model_in(node.func.value, aliases)
                if model:
                    found.setdefault(model, []).append(node.lineno)
            if "insert" in name.lower() or "copy" in name.lower():
                for argument in node.args:
                    if isinstance(argument, ast.Name) and argument.id in aliases:
                        found.setdefault(aliases[argument.id], []).append(node.lineno)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _writes_sql(node):
            for model in _tables_named(node, aliases):
                found.setdefault(model, []).append(node.lineno)
    return found


def consent_writes():
    """Return {(path, model): [line, ...]} for every write found outside crm/services/."""
    return {
        (relative, model): sorted(lines)
        for relative, text in _sources()
        for model, lines in _writes_in(ast.parse(text, relative)).items()
    }


def test_consent_tables_are_written_only_through_crm_services():
    unlisted = {place: lines for place, lines in consent_writes().items() if place not in ALLOWED}
    assert not unlisted, "Writes to consent tables outside crm/services/ (use a crm service):\n" + (
        "\n".join(
            f"{path}:{lines} writes {model}" for (path, model), lines in sorted(unlisted.items())
        )
    )


def test_the_scan_finds_each_kind_of_write():
    """The scan sees each route it is meant to catch (guards the scanner itself)."""
    source = """
from crm.models import ConsentRecord as Record, AuditEvent, Subscription, Suppression, Supporter

def a():
    Record.objects.filter(pk=1)._erase()
    AuditEvent(kind="x").save()
    writer.insert(Subscription, [], [])
    Supporter.objects.filter(pk=1).update(first_name="A")

def b(cursor):
    cursor.execute(f"DELETE FROM {Suppression._meta.db_table} WHERE id = %s", [1])

def c(cursor):
    cursor.execute(f"SELECT 1 FROM {Suppression._meta.db_table} FOR UPDATE")
"""
    assert _writes_in(ast.parse(source)) == {
        "ConsentRecord": [5],
        "AuditEvent": [6],
        "Subscription": [7],
        "Suppression": [10],
    }
