"""
Errors Rally raises on purpose, under one root, each mixed with the Django
exception it means (as Anymail does): a `ValidationError` is shown to staff as
a form or page message, never a server error.

mailings/exceptions.py adds the mailing errors under the same root.
"""

from django.core.exceptions import ValidationError


class RallyError(Exception):
    """Base class for errors Rally raises on purpose."""


class ConsentRefused(RallyError, ValidationError):
    """Consent cannot be recorded for this supporter (suppressed or erased)."""


class SegmentRuleError(RallyError, ValidationError):
    """A saved segment definition that can no longer be evaluated."""


class SegmentInUse(RallyError, ValidationError):
    """A segment cannot be deleted while mailings that have not finished use it."""


class ImportRejected(RallyError, ValidationError):
    """The whole file cannot be imported (no email column, wrong encoding...).

    Nothing was stored; the message says what to fix.
    """


class ImportRefused(RallyError, ValidationError):
    """A batch cannot be confirmed or reverted in its current state."""


class ImportFailed(RallyError, ValidationError):
    """Applying a batch failed; the database is as it was before."""
