"""Run a mail sink: ``python -m mailsink --port 8025``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mailsink.sink import MailSink


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the sink's options to ``parser``."""
    parser.add_argument("--host", default="127.0.0.1", help="Address to listen on.")
    parser.add_argument("--port", type=int, default=8025, help="Port to listen on (0: any).")
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0,
        help="Delay every send API call by this many milliseconds (default 0).",
    )
    parser.add_argument(
        "--recipient-limit",
        type=int,
        default=None,
        help="Refuse send calls carrying more recipients (default: the ESP's own limits).",
    )
    parser.add_argument(
        "--reject",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="Refuse this address as an inactive recipient (repeatable).",
    )
    parser.add_argument(
        "--keep-bodies",
        type=int,
        default=10_000,
        help="Keep the HTML and text of only the newest N messages (default 10000).",
    )


def sink_from_options(options: dict[str, Any], *, persist_path: Path | None) -> MailSink:
    """Build a sink from parsed :func:`add_arguments` options."""
    sink = MailSink(
        host=options["host"],
        port=options["port"],
        latency_ms=options["latency_ms"],
        keep_bodies=options["keep_bodies"],
        persist_path=persist_path,
    )
    sink.set_faults(recipient_limit=options["recipient_limit"], reject=options["reject"])
    return sink


def describe(sink: MailSink) -> str:
    """Return the start-up banner: where the UI and the two APIs are."""
    return (
        f"Mail sink at {sink.url}/ ({sink.count()} messages kept)\n"
        f"  Postmark API: {sink.postmark_api_url}  Mailgun API: {sink.mailgun_api_url}"
    )


def main(argv: list[str] | None = None) -> int:
    """Run a sink in the foreground until Ctrl-C; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m mailsink",
        description="Run Rally's local mail sink: a loopback Postmark/Mailgun API that keeps "
        "every email sent in development and shows it at http://HOST:PORT/.",
    )
    add_arguments(parser)
    parser.add_argument(
        "--persist",
        type=Path,
        default=None,
        metavar="FILE",
        help="Append messages to this JSON-lines file and reload it on start "
        "(default: keep them in memory only).",
    )
    options = vars(parser.parse_args(argv))
    sink = sink_from_options(options, persist_path=options["persist"])
    try:
        sink.serve_forever(on_ready=lambda s: print(describe(s), flush=True))
    except OSError as error:
        parser.exit(
            1,
            f"Cannot listen on {options['host']}:{options['port']}: {error.strerror}. "
            "Is another mail sink running? Choose another port with --port.\n",
        )
    except KeyboardInterrupt:
        print("Mail sink stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
