"""
Errors an import raises on purpose, under Rally's one root: each is a
ValidationError, shown to staff as a message, and says what to fix.
"""

from django.core.exceptions import ValidationError

from crm.services import RallyError


class ImportRejected(RallyError, ValidationError):
    """The whole file cannot be imported (no email column, wrong encoding...).

    Nothing was stored; the message says what to fix.
    """


class ImportRefused(RallyError, ValidationError):
    """A batch cannot be confirmed or reverted in its current state."""


class ImportFailed(RallyError, ValidationError):
    """Applying a batch failed; the database is as it was before."""
