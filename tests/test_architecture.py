"""The apps' import contracts (pyproject.toml's [tool.importlinter]) hold.

crm knows nothing of mailings, no app imports project or the development
tools, and models never import admin, views, forms or tasks. `make lint` runs
the same check; this test makes the suite hold the line too.
"""

import subprocess
import sys
from pathlib import Path

from django.conf import settings


def test_import_contracts_hold():
    """lint-imports (beside this Python) finds every contract kept."""
    lint_imports = Path(sys.executable).with_name("lint-imports")

    result = subprocess.run(
        [str(lint_imports), "--no-cache"],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
