"""A worker finds every task: the apps' through autodiscovery, the project's by name."""

import json
import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent

# What a worker registers at start-up, in a fresh process: nothing imported by
# the test run can stand in for a module the worker would not import.
LIST_TASKS = """
import json
import django
django.setup()
from project.celery import app
app.loader.import_default_modules()
print(json.dumps(sorted(name for name in app.tasks if not name.startswith("celery."))))
"""


def _registered_tasks(tmp_path):
    env = os.environ | {
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "RALLY_VAR_DIR": str(tmp_path),
    }
    output = subprocess.run(
        [sys.executable, "-c", LIST_TASKS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(json.loads(output.splitlines()[-1]))


def test_worker_registers_every_scheduled_routed_and_notice_task(tmp_path):
    """Beat's and the routes' tasks exist, and notices keep the names queued messages carry."""
    registered = _registered_tasks(tmp_path)

    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    routed = set(settings.CELERY_TASK_ROUTES)
    notices = {
        "mailings.notices.send_signup_confirmation",
        "mailings.notices.send_preferences_link",
        "mailings.notices.send_data_download",
    }
    assert scheduled | routed | notices <= registered


def test_celery_imports_names_no_app_module():
    """The apps' tasks live in their tasks.py; CELERY_IMPORTS is for the project alone."""
    assert [name for name in settings.CELERY_IMPORTS if not name.startswith("project.")] == []
