"""Writes for mailings: queueing, sending, tracking."""


def mail_data_erase(*, supporter):
    """Remove personal data the mailing history holds about `supporter`.

    Called by crm.services.supporter_erase inside its transaction. Delivery
    rows stay (anonymised through the supporter) so mailing reports keep
    their counts.
    """


def mail_data_export(*, supporter):
    """Return what the mailing history holds about `supporter`, for a data export."""
    return {}
