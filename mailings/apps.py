from django.apps import AppConfig
from django.core import checks


class MailingsConfig(AppConfig):
    name = "mailings"
    verbose_name = "Mailings"

    def ready(self):
        from crm import extensions
        from mailings import (
            receivers,  # noqa: F401 - connects the tracking receiver
            segments,
            services,
            timeline,
        )

        checks.register(check_sending_settings)
        # What mailings adds to the CRM, which knows nothing of mailings.
        extensions.register_data_export(services.mail_data_export)
        extensions.register_erasure(services.mail_data_erase)
        extensions.register_segment_use(segments.mailings_using)
        extensions.register_segment_users(segments.mailings_by_segment)
        extensions.register_segment_condition("opened_within_days", segments.opened_within)
        extensions.register_segment_condition("clicked_within_days", segments.clicked_within)
        extensions.register_segment_condition("quiet_for_days", segments.quiet_for)
        extensions.register_timeline(timeline.mailings_sent)
        extensions.register_engagement(timeline.engagement)


def check_sending_settings(app_configs=None, **kwargs):
    """Refuse settings that would make tracking webhooks open or sending unsafe."""
    from django.conf import settings

    errors = []
    if not settings.DEBUG and not settings.ANYMAIL.get("WEBHOOK_SECRET"):
        errors.append(
            checks.Error(
                "ANYMAIL_WEBHOOK_SECRET is not set, so anyone could post fake bounces and "
                "complaints to the tracking webhooks.",
                hint="Set ANYMAIL_WEBHOOK_SECRET to 'user:long-random-password' and give the "
                "ESP webhook URLs with those credentials (docs/sending.md).",
                id="mailings.E001",
            )
        )
    timeout = settings.ANYMAIL.get("REQUESTS_TIMEOUT", 30)
    longest = max(timeout) if isinstance(timeout, tuple | list) else float(timeout or 30)
    if 2 * longest > settings.RALLY_SEND_LEASE_SECONDS:
        errors.append(
            checks.Error(
                f"RALLY_SEND_LEASE_SECONDS ({settings.RALLY_SEND_LEASE_SECONDS}) must be at least "
                f"twice the ESP call timeout ({longest:g}s), or a slow call could be sent twice.",
                hint="Raise RALLY_SEND_LEASE_SECONDS or lower ANYMAIL_REQUESTS_TIMEOUT.",
                id="mailings.E002",
            )
        )
    return errors
