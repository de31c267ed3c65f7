"""Errors the mailings app raises on purpose, under crm's `RallyError` root."""

from django.core.exceptions import ValidationError

from crm.exceptions import RallyError


class MailingRefused(RallyError, ValidationError):
    """The mailing cannot move to the requested state; the message says why."""


class MergeFieldError(RallyError, ValidationError):
    """The mailing names a merge field Rally does not know."""


class ListRefused(RallyError, ValidationError):
    """A report list that does not exist was asked for; the message names those that do."""


class UnreadablePayload(RallyError):
    """A tracking webhook's body is not what the ESP sends (answered 400)."""


class SignupRefused(RallyError):
    """The address cannot be subscribed (suppressed, bounced, complained or erased)."""
