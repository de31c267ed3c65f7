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
unnoticed. The list should only shrink: each entry says why it is still there,
and an entry whose place no longer writes fails too, so it is taken out.

crm/sql.py's statements stay listed, as the statements must live there (C17);
a second test makes sure only crm/services/ runs the ones that write these
tables. A third makes sure only the two services that may remove consent
records (supporter_erase, supporters_delete_unused_import) do.

What this cannot see: `.save()` or `.delete()` on an instance fetched earlier,
writes through a model passed in a variable, and the admin's own generic
deletes (a suppression's delete goes through suppression_remove, see
tests/crm/test_admin_suppressions.py; a supporter's delete is refused when it
would cascade to consent records, which nobody may delete).
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
DEMO = (
    "demo data (seed_demo, for development): a made-up past, grants dated when each "
    "supporter joined, withdrawals and bounces, which no service writes (a service "
    "records what happens now, with its audit event); 100,000 supporters in seconds"
)
STATEMENTS = (
    "crm's raw statements (C17); only crm/services/ runs those that write consent tables "
    "(test_crm_sql_writes_to_consent_tables_run_only_from_crm_services)"
)
ALLOWED = {
    ("crm/demo.py", "Subscription"): DEMO,
    ("crm/demo.py", "ConsentRecord"): DEMO,
    ("crm/demo.py", "Suppression"): DEMO,
    ("crm/sql.py", "Subscription"): STATEMENTS,
    ("crm/sql.py", "ConsentRecord"): STATEMENTS,
    ("crm/sql.py", "AuditEvent"): STATEMENTS,
}
SQL_MODULE = "crm/sql.py"
# The only services that may delete consent records (crm.models.ConsentRecord says why).
REMOVERS = {
    ("crm/services/gdpr.py", "supporter_erase"),
    ("crm/services/consent.py", "supporters_delete_unused_import"),
}


def _sources(*, services=False, packages=("crm", "mailings")):
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if "/migrations/" in relative:
                continue
            if relative.startswith("crm/services/") and not services:
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


def _writes_in(tree, aliases=None):
    """Return {model: [line, ...]} for the consent-table writes in one module's tree."""
    aliases = aliases or _aliases(tree)
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
                # The model, or its table (`Model._meta.db_table`), handed to a helper.
                for argument in node.args:
                    model = _model_in(argument, aliases)
                    if model:
                        found.setdefault(model, []).append(node.lineno)
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


def consent_statements(text):
    """Return the names of the functions in crm/sql.py (`text`) that write a consent table.

    A function counts if it writes one itself or calls one that does.
    """
    tree = ast.parse(text)
    aliases = _aliases(tree)
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    writing = {name for name, node in functions.items() if _writes_in(node, aliases)}
    while True:
        calling = {
            name
            for name, node in functions.items()
            if any(
                isinstance(child, ast.Call)
                and isinstance(child.func, ast.Name)
                and child.func.id in writing
                for child in ast.walk(node)
            )
        }
        if calling <= writing:
            return writing
        writing |= calling


def _absolute(node, relative):
    """Return the module an `ImportFrom` node imports from, relative imports resolved."""
    if not node.level:
        return node.module
    package = relative.removesuffix(".py").split("/")[: -node.level]
    return ".".join([*package, *([node.module] if node.module else [])])


def _uses_of(tree, names, relative="module.py"):
    """Return the lines of `tree` that use crm.sql's functions `names` (call or reference)."""
    modules, functions = set(), {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and _absolute(node, relative) == "crm":
            modules.update(
                alias.asname or alias.name for alias in node.names if alias.name == "sql"
            )
        elif isinstance(node, ast.ImportFrom) and _absolute(node, relative) == "crm.sql":
            functions.update((alias.asname or alias.name, alias.name) for alias in node.names)
        elif isinstance(node, ast.Import):
            modules.update(
                alias.asname for alias in node.names if alias.name == "crm.sql" and alias.asname
            )
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in names:
            owner = node.value
            if (isinstance(owner, ast.Name) and owner.id in modules) or (
                isinstance(owner, ast.Attribute)
                and owner.attr == "sql"
                and isinstance(owner.value, ast.Name)
                and owner.value.id == "crm"
            ):
                lines.append(node.lineno)
        elif isinstance(node, ast.Name) and functions.get(node.id) in names:
            lines.append(node.lineno)
    return sorted(lines)


def consent_statement_uses():
    """Return {path: [line, ...]} for each use of crm/sql.py's consent writes, anywhere."""
    names = consent_statements((ROOT / SQL_MODULE).read_text())
    found = {}
    for relative, text in _sources(services=True, packages=("crm", "mailings", "project")):
        if relative != SQL_MODULE:
            lines = _uses_of(ast.parse(text, relative), names, relative)
            if lines:
                found[relative] = lines
    return found


def _removals_in(tree):
    """Return the names of the functions in `tree` that delete consent records.

    A deletion outside any function counts as "<module>".
    """
    aliases = _aliases(tree)

    def removes(node):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            return False
        name = node.func.attr
        return name == "_erase" or (
            name in {"delete", "_raw_delete"}
            and _model_in(node.func.value, aliases) == "ConsentRecord"
        )

    found, inside = set(), set()
    for function in ast.walk(tree):
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(function):
                if removes(node):
                    found.add(function.name)
                    inside.add(node)
    if any(removes(node) and node not in inside for node in ast.walk(tree)):
        found.add("<module>")
    return found


def test_consent_tables_are_written_only_through_crm_services():
    unlisted = {place: lines for place, lines in consent_writes().items() if place not in ALLOWED}
    assert not unlisted, "Writes to consent tables outside crm/services/ (use a crm service):\n" + (
        "\n".join(
            f"{path}:{lines} writes {model}" for (path, model), lines in sorted(unlisted.items())
        )
    )


def test_the_allow_list_names_only_places_that_still_write():
    """An entry whose write has moved into crm/services/ is taken out of ALLOWED."""
    assert set(ALLOWED) - set(consent_writes()) == set()


def test_crm_sql_writes_to_consent_tables_run_only_from_crm_services():
    """crm/sql.py holds the statements (C17); only crm's services may run those."""
    names = consent_statements((ROOT / SQL_MODULE).read_text())
    assert {"subscriptions_withdraw", "import_subscribe"} <= names
    uses = consent_statement_uses()
    assert "crm/services/consent.py" in uses
    outside = {path: lines for path, lines in uses.items() if not path.startswith("crm/services/")}
    assert not outside, (
        f"crm.sql's writes to consent tables ({', '.join(sorted(names))}) run outside "
        f"crm/services/: {outside}"
    )


def test_only_erasure_and_an_import_revert_delete_consent_records():
    """Consent history is withdrawn, not deleted, save by these two services (C16)."""
    removing = {
        (relative, name)
        for relative, text in _sources(services=True, packages=("crm", "mailings", "project"))
        for name in _removals_in(ast.parse(text, relative))
    }
    assert removing == REMOVERS


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

def d():
    sql.copy_rows(Subscription._meta.db_table, [], [])
"""
    assert _writes_in(ast.parse(source)) == {
        "ConsentRecord": [5],
        "AuditEvent": [6],
        "Subscription": [7, 17],
        "Suppression": [10],
    }
    assert _removals_in(ast.parse(source)) == {"a"}


def test_the_scan_finds_crm_sql_statements_and_who_runs_them():
    """Statements writing a consent table, directly or through another, and each way of running
    one (guards the scanner itself)."""
    statements = """
from crm.models import AuditEvent, Supporter

def events_insert(cursor):
    cursor.execute(f"INSERT INTO {AuditEvent._meta.db_table} (kind) VALUES ('x')")

def events_insert_twice(cursor):
    events_insert(cursor)

def supporters_touch(cursor):
    cursor.execute(f"UPDATE {Supporter._meta.db_table} SET updated_at = now()")
"""
    names = consent_statements(statements)
    assert names == {"events_insert", "events_insert_twice"}
    callers = """
from crm import sql
from crm import sql as crm_sql
from crm.sql import events_insert as insert
from mailings import sql as mailings_sql
import crm.sql

def run(cursor):
    sql.events_insert(cursor)
    crm_sql.events_insert_twice(cursor)
    insert(cursor)
    crm.sql.events_insert(cursor)
    sql.supporters_touch(cursor)
    mailings_sql.events_insert(cursor)
"""
    assert _uses_of(ast.parse(callers), names) == [9, 10, 11, 12]
    relative = "from .. import sql\n\nsql.events_insert(None)\n"
    assert _uses_of(ast.parse(relative), names, "crm/imports/writers.py") == [3]
