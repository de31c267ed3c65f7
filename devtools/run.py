"""
Start the processes of Procfile.dev as `honcho` does, and stop them cleanly on Ctrl-C.

    python -m devtools.run --procfile Procfile.dev start

honcho sends every process SIGTERM on Ctrl-C and kills whatever is still
running five seconds later. The Celery worker's warm shutdown (it lets a
running task finish and acknowledges it) takes up to about six seconds on the
embedded broker, so a Ctrl-C used to end in a SIGKILL and ERROR lines. Here
honcho waits up to KILL_WAIT seconds instead, and Ctrl-C exits with status 0.
"""

import sys

import honcho.command
import honcho.manager

KILL_WAIT = 15
INTERRUPTED = 130  # honcho's exit status when Ctrl-C stopped it


def main(argv=None):
    honcho.manager.KILL_WAIT = KILL_WAIT
    sys.argv[0] = "honcho"
    try:
        honcho.command.main(argv)
    except SystemExit as exit:
        return 0 if exit.code == INTERRUPTED else exit.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
