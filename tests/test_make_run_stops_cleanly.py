"""Ctrl-C on `make run` stops the worker and beat cleanly: no kill, no ERROR line.

honcho used to kill the worker five seconds into its warm shutdown, and its
forked children died under it, each with an ERROR line. The worker and beat of
Procfile.dev run here as `make run` starts them, on their own SQLite database
and embedded broker (never the test run's Redis, whose tasks they would take).
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _environment(var_dir):
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"}
    }
    # Celery, honcho and manage.py as installed beside this Python.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env | {"DEBUG": "1", "RALLY_VAR_DIR": str(var_dir), "PYTHONUNBUFFERED": "1"}


def test_ctrl_c_stops_the_worker_and_beat_without_a_kill_or_an_error(tmp_path):
    env = _environment(tmp_path)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    output = tmp_path / "run.log"
    with output.open("w") as log:
        run = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "devtools.run",
                "--procfile",
                "Procfile.dev",
                "start",
                "worker",
                "beat",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while "ready." not in output.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "ready." in output.read_text(), output.read_text()
        time.sleep(2)  # beat's first tasks reach the worker

        os.killpg(run.pid, signal.SIGINT)  # what a terminal sends on Ctrl-C
        stopped_at = time.monotonic()
        code = run.wait(timeout=30)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)

    text = output.read_text()
    assert code == 0, text
    assert time.monotonic() - stopped_at < 15
    for sign_of_trouble in ("ERROR", "Traceback", "SIGKILL", "Killing"):
        assert sign_of_trouble not in text, text
