import ast
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ROOT / "project" / "settings.py"


@pytest.fixture
def var_dir(tmp_path):
    """The started process's own var/, so that nothing lands in the checkout's."""
    return tmp_path / "var"


def run_django(code, var_dir, **env):
    """Run `code` in a new Python with Rally's settings, `env`, and no DEBUG or SECRET_KEY."""
    environment = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG")}
    environment.update(DJANGO_SETTINGS_MODULE="project.settings", RALLY_VAR_DIR=str(var_dir), **env)
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("debug", [None, "0"], ids=["DEBUG unset", "DEBUG=0"])
def test_refuses_to_start_without_a_secret_key_unless_in_development(var_dir, debug):
    """A forgotten variable never means a published key: DEBUG is off unless asked for."""
    result = run_django("pass", var_dir, **({"DEBUG": debug} if debug else {}))

    assert result.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY is not set" in result.stderr
    assert "DEBUG=1" in result.stderr  # what to set for development
    assert not (var_dir / "secret-key").exists()


def test_in_development_a_random_key_is_made_once_and_kept(var_dir):
    show = "from django.conf import settings; print(settings.DEBUG, settings.SECRET_KEY)"

    first = run_django(show, var_dir, DEBUG="1")
    again = run_django(show, var_dir, DEBUG="1")

    assert first.returncode == 0, first.stderr
    debug, key = first.stdout.split()
    assert debug == "True"
    assert len(key) >= 50
    assert again.stdout.split() == ["True", key]
    key_file = var_dir / "secret-key"
    assert key_file.read_text().strip() == key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert [path.name for path in var_dir.iterdir() if path.name.startswith(".")] == []


def test_two_checkouts_get_different_keys(tmp_path):
    show = "from django.conf import settings; print(settings.SECRET_KEY)"

    one = run_django(show, tmp_path / "one", DEBUG="1")
    other = run_django(show, tmp_path / "other", DEBUG="1")

    assert one.returncode == other.returncode == 0, one.stderr + other.stderr
    assert one.stdout != other.stdout


def test_a_secret_key_in_the_environment_wins_and_no_key_file_is_made(var_dir):
    show = "from django.conf import settings; print(settings.SECRET_KEY)"

    result = run_django(show, var_dir, DEBUG="1", SECRET_KEY="k" * 50)

    assert result.stdout.strip() == "k" * 50
    assert not (var_dir / "secret-key").exists()


def test_settings_hold_no_fixed_secret_key():
    """Where SECRET_KEY is set, only its name, the empty default and the development key's
    file name appear: no key is in the source."""
    tree = ast.parse(SETTINGS.read_text())
    assignments = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and any(getattr(target, "id", "").startswith("SECRET_KEY") for target in node.targets)
    ]
    texts = {
        node.value
        for assignment in assignments
        for node in ast.walk(assignment.value)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }

    assert assignments
    assert texts <= {"SECRET_KEY", "", "secret-key"}
    assert "not-for-production" not in SETTINGS.read_text()


def test_deploy_check_leaves_only_the_tls_dependent_warning(var_dir):
    """HSTS (W004) depends on how TLS is set up where Rally is deployed; nothing else warns."""
    result = run_django(
        "from django.core.management import call_command; call_command('check', deploy=True)",
        var_dir,
        DEBUG="0",
        SECRET_KEY="x" * 60 + "Yz-9",
        ALLOWED_HOSTS="rally.example.org",
        SITE_URL="https://rally.example.org",
        ANYMAIL_WEBHOOK_SECRET="esp:" + "s" * 32,
    )
    assert result.returncode == 0, result.stderr
    warnings = {
        line.split(")")[0] + ")" for line in result.stderr.splitlines() if "(security." in line
    }
    assert warnings == {"?: (security.W004)"}


def test_prepared_statements_are_on_for_postgresql_unless_turned_off(var_dir):
    """Behind an old PgBouncer in transaction mode, operators turn them off (docs/deploy.md)."""
    show = "from django.db import connection; print(connection.settings_dict['OPTIONS'])"
    url = "postgres://rally@db.example.org:5432/rally"
    on = run_django(show, var_dir, DEBUG="1", DATABASE_URL=url)
    off = run_django(show, var_dir, DEBUG="1", DATABASE_URL=url, DATABASE_PREPARED_STATEMENTS="0")
    assert on.returncode == 0 and off.returncode == 0, on.stderr + off.stderr
    assert "'server_side_binding': True" in on.stdout
    assert "'prepare_threshold': 5" in on.stdout
    assert "server_side_binding" not in off.stdout
    assert "prepare_threshold" not in off.stdout


def test_no_program_in_the_repository_holds_a_fixed_secret_key():
    """Benches and tools make a random key per run; a published key signs anyone's links."""
    root = SETTINGS.parent.parent
    fixed = re.compile(r"""["']SECRET_KEY["']\s*[:,]\s*["']""")
    holders = [
        str(path.relative_to(root))
        for folder in ("bench", "crm", "mailings", "project")
        for path in (root / folder).rglob("*.py")
        if fixed.search(path.read_text())
    ]
    assert holders == []
