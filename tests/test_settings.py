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
