"""Tests and benches start gunicorn, celery and Python from the environment running them."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ".venv" + "/"  # spelt in two, so that this file does not find itself


def _docstrings(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                yield body[0].value


def test_no_test_or_bench_names_a_virtualenv_folder():
    """Executables are found beside sys.executable, never at a fixed `.venv/` path.

    The suite then runs in whichever virtualenv it is installed in (a CI
    image, tox, a developer's own). Docstrings may still show the usual
    command line.
    """
    found = []
    for path in sorted([*(ROOT / "tests").rglob("*.py"), *(ROOT / "bench").rglob("*.py")]):
        tree = ast.parse(path.read_text(), filename=str(path))
        docstrings = {id(node) for node in _docstrings(tree)}
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
                and VENV in node.value
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []
