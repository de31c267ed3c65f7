"""Raw SQL lives in one module per app: crm/sql.py and mailings/sql.py (STYLE.md C17).

A `cursor(` or `.raw(` anywhere else in crm/ or mailings/ (migrations aside)
fails here, naming the file and line.
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("crm", "mailings")
SQL_MODULES = {Path("crm/sql.py"), Path("mailings/sql.py")}
RAW = re.compile(r"cursor\(|\.raw\(")
# Files allowed a raw statement outside the sql modules, each with its reason.
ALLOWED: dict[Path, str] = {}


def _found():
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            relative = path.relative_to(ROOT)
            if "migrations" in relative.parts or relative in SQL_MODULES:
                continue
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                if RAW.search(line):
                    yield relative, number, line.strip()


def test_raw_sql_only_in_the_sql_modules():
    stray = [f"{path}:{number}: {line}" for path, number, line in _found() if path not in ALLOWED]
    assert not stray, (
        "raw SQL outside crm/sql.py and mailings/sql.py (move it there):\n" + "\n".join(stray)
    )


def test_the_sql_modules_hold_the_statements():
    for module in SQL_MODULES:
        assert RAW.search((ROOT / module).read_text()), module


def test_allowed_files_still_need_it():
    found = {path for path, _, _ in _found()}
    assert not set(ALLOWED) - found, "allowed but no longer needed: remove from ALLOWED"
