"""`.env.example` lists every variable the settings read, so operators can find them all."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _is_environ(node):
    return isinstance(node, ast.Attribute) and node.attr == "environ"


def variables_read_by_settings():
    """Name every variable project/settings.py reads: env.<type>("X"), env("X"), os.environ."""
    names = set()
    for node in ast.walk(ast.parse((ROOT / "project" / "settings.py").read_text())):
        key = None
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            reads_env = (isinstance(func, ast.Name) and func.id == "env") or (
                isinstance(func, ast.Attribute)
                and (
                    (isinstance(func.value, ast.Name) and func.value.id == "env")
                    or (func.attr == "get" and _is_environ(func.value))
                    or func.attr == "getenv"
                )
            )
            key = node.args[0] if reads_env else None
        elif isinstance(node, ast.Subscript) and _is_environ(node.value):
            key = node.slice
        elif isinstance(node, ast.Compare) and any(_is_environ(c) for c in node.comparators):
            key = node.left
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            names.add(key.value)
    return names


def variables_in_env_example():
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))


def test_the_settings_reads_are_found():
    read = variables_read_by_settings()

    assert {"DEBUG", "SECRET_KEY", "DATABASE_URL", "RALLY_VAR_DIR", "EMAIL_BACKEND"} <= read


def test_every_variable_the_settings_read_is_in_env_example():
    missing = variables_read_by_settings() - variables_in_env_example()

    assert sorted(missing) == []
