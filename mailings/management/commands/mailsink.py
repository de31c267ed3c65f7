"""Run the local mail sink: the ESP that development settings send to."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from mailings.mailsink import MailSink


class Command(BaseCommand):
    help = (
        "Run Rally's local mail sink: a loopback Postmark/Mailgun API that keeps every "
        "email sent in development and shows it at http://HOST:PORT/."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="Address to listen on.")
        parser.add_argument("--port", type=int, default=8025, help="Port to listen on.")
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
            help="Refuse send calls carrying more recipients, as the ESP would.",
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
        parser.add_argument(
            "--no-persist",
            action="store_true",
            help="Keep messages in memory only (default: append to "
            "VAR_DIR/mailsink/messages.jsonl and reload it on start).",
        )

    def handle(self, *args, **options):
        persist_path = None
        if not options["no_persist"]:
            persist_path = settings.VAR_DIR / "mailsink" / "messages.jsonl"
        sink = MailSink(
            host=options["host"],
            port=options["port"],
            latency_ms=options["latency_ms"],
            keep_bodies=options["keep_bodies"],
            persist_path=persist_path,
        )
        sink.set_faults(recipient_limit=options["recipient_limit"], reject=options["reject"])
        try:
            sink.serve_forever(on_ready=self._announce)
        except OSError as error:
            raise CommandError(
                f"Cannot listen on {options['host']}:{options['port']}: {error.strerror}. "
                "Is another mail sink running? Choose another port with --port."
            ) from error
        except KeyboardInterrupt:
            self.stdout.write("Mail sink stopped.")

    def _announce(self, sink):
        self.stdout.write(
            f"Mail sink at {sink.url}/ ({sink.count()} messages kept)\n"
            f"  Postmark API: {sink.postmark_api_url}  Mailgun API: {sink.mailgun_api_url}"
        )
        self.stdout.flush()
