"""Every statement in crm/sql.py and mailings/sql.py has a test in tests/sql/ (STYLE.md C17).

A statement is a top-level function whose body opens a cursor. A test names
it when a test module here refers to it (`sql.<name>`, or imports it). A new
statement without a test fails here, naming it; so does one whose docstring
names neither the bench that justifies it nor what the ORM cannot do.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
SQL_MODULES = (Path("crm/sql.py"), Path("mailings/sql.py"))
TESTS = Path(__file__).resolve().parent


def statements(module):
    """Return the names of the top-level functions of `module` that call `.cursor(` themselves."""
    return [node.name for node in statement_nodes(module)]


def statement_nodes(module):
    tree = ast.parse((ROOT / module).read_text(), filename=str(module))
    return [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and any(
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Attribute)
            and call.func.attr == "cursor"
            for call in ast.walk(node)
        )
    ]


def referred_to():
    """Return the names the test modules here refer to as attributes or import."""
    names = set()
    for path in TESTS.glob("test_*.py"):
        if path.resolve() == Path(__file__).resolve():
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Attribute):
                names.add(node.attr)
            elif isinstance(node, ast.ImportFrom):
                names.update(alias.name for alias in node.names)
    return names


def test_the_guard_finds_the_statements():
    found = {module: statements(module) for module in SQL_MODULES}
    assert {"subscriptions_withdraw", "copy_rows"} <= set(found[Path("crm/sql.py")])
    assert {"deliveries_claim", "events_insert"} <= set(found[Path("mailings/sql.py")])
    # Helpers that only build SQL open no cursor.
    assert "match_any" not in found[Path("crm/sql.py")]


def test_every_statement_has_a_test_here():
    tested = referred_to()
    missing = [
        f"{module}: {name}"
        for module in SQL_MODULES
        for name in statements(module)
        if name not in tested
    ]
    assert not missing, (
        "statements no test in tests/sql/ runs (add one that runs each on PostgreSQL, "
        "and an equivalence test if it has an ORM twin):\n" + "\n".join(missing)
    )


def test_every_statement_says_why_it_is_sql():
    unjustified = [
        f"{module}: {node.name}"
        for module in SQL_MODULES
        for node in statement_nodes(module)
        if not any(why in (ast.get_docstring(node) or "") for why in ("bench/", "The ORM cannot"))
    ]
    assert not unjustified, (
        "statements whose docstring names no bench/ script (say which measurement "
        "shows the SQL pays, or why the ORM cannot say it):\n" + "\n".join(unjustified)
    )
