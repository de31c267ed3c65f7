import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_django(code, **env):
    environment = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    environment.update(DJANGO_SETTINGS_MODULE="project.settings", **env)
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_refuses_to_start_without_a_secret_key_when_debug_is_off():
    result = run_django("pass", DEBUG="0")
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_deploy_check_leaves_only_the_tls_dependent_warning():
    """HSTS (W004) depends on how TLS is set up where Rally is deployed; nothing else warns."""
    result = run_django(
        "from django.core.management import call_command; call_command('check', deploy=True)",
        DEBUG="0",
        SECRET_KEY="x" * 60 + "Yz-9",
        ALLOWED_HOSTS="rally.example.org",
        ANYMAIL_WEBHOOK_SECRET="esp:" + "s" * 32,
    )
    assert result.returncode == 0, result.stderr
    warnings = {
        line.split(")")[0] + ")" for line in result.stderr.splitlines() if "(security." in line
    }
    assert warnings == {"?: (security.W004)"}


def test_prepared_statements_are_on_for_postgresql_unless_turned_off():
    """Behind an old PgBouncer in transaction mode, operators turn them off (docs/deploy.md)."""
    show = "from django.db import connection; print(connection.settings_dict['OPTIONS'])"
    url = "postgres://rally@db.example.org:5432/rally"
    on = run_django(show, DEBUG="1", DATABASE_URL=url)
    off = run_django(show, DEBUG="1", DATABASE_URL=url, DATABASE_PREPARED_STATEMENTS="0")
    assert on.returncode == 0 and off.returncode == 0, on.stderr + off.stderr
    assert "'server_side_binding': True" in on.stdout
    assert "'prepare_threshold': 5" in on.stdout
    assert "server_side_binding" not in off.stdout
    assert "prepare_threshold" not in off.stdout
