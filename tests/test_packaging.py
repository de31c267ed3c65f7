"""pyproject.toml keeps to what today's packaging tools accept."""

import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def test_license_is_an_spdx_expression():
    """setuptools stops building projects whose `license` is a table in 2027."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    assert project["license"] == "AGPL-3.0-or-later"
