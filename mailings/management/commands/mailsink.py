"""Run the local mail sink: the ESP that development settings send to."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from mailings import mailsink


class Command(BaseCommand):
    help = (
        "Run Rally's local mail sink: a loopback Postmark/Mailgun API that keeps every "
        "email sent in development and shows it at http://HOST:PORT/."
    )

    def add_arguments(self, parser):
        mailsink.add_arguments(parser)
        parser.add_argument(
            "--no-persist",
            action="store_true",
            help="Keep messages in memory only (default: append them to "
            "VAR_DIR/mailsink/messages.jsonl and reload that file on start).",
        )

    def handle(self, *args, **options):
        persist_path = None
        if not options["no_persist"]:
            persist_path = settings.VAR_DIR / "mailsink" / "messages.jsonl"
        sink = mailsink.sink_from_options(options, persist_path=persist_path)
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
        self.stdout.write(mailsink.describe(sink))
        self.stdout.flush()
