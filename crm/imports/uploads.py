"""
Uploads waiting for a preview: the file a staff member chose, kept between
the upload, the matching of its columns and the preview, so that adjusting
the columns or the options never asks for the file again.

An upload is kept in Django's cache (Redis in production, shared by every
web machine, as django-import-export's CacheStorage keeps its uploads),
compressed, for RALLY_IMPORT_PREVIEW_HOURS like an unconfirmed preview;
then the cache forgets it by itself. Confirming an import forgets its upload
at once. Only the staff member who uploaded a file can read it back.
"""

import datetime
import re
import secrets
import zlib
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from crm.imports.columns import column_examples
from crm.imports.files import Table

TOKEN = re.compile(r"[0-9a-f]{32}")


@dataclass
class Upload:
    """A kept upload: the file, whose list it is, how to read it, and what its columns hold."""

    token: str
    data: bytes
    file_name: str
    partner_id: int
    file_format: str
    encoding: str
    columns: list  # [(heading, [example values])], as columns.column_examples returns
    row_count: int
    uploaded_at: datetime.datetime


def _key(token):
    return f"crm:import-upload:{token}"


def _lifetime():
    return datetime.timedelta(hours=settings.RALLY_IMPORT_PREVIEW_HOURS)


def upload_keep(
    *, data: bytes, file_name: str, partner, table: Table, encoding: str, actor
) -> Upload:
    """Keep an uploaded file whose table was read, for its owner to preview again."""
    upload = Upload(
        token=secrets.token_hex(16),
        data=data,
        file_name=file_name,
        partner_id=partner.pk,
        file_format=table.file_format,
        encoding=encoding,
        columns=column_examples(table),
        row_count=len(table.rows),
        uploaded_at=timezone.now(),
    )
    value = {**upload.__dict__, "data": zlib.compress(data, 1), "actor_id": actor.pk}
    cache.set(_key(upload.token), value, int(_lifetime().total_seconds()))
    return upload


def upload_read(*, token: str, actor) -> Upload | None:
    """Return `actor`'s kept upload for `token`, or None if there is none (any more)."""
    if not TOKEN.fullmatch(token or ""):
        return None
    value = cache.get(_key(token))
    if value is None or value.pop("actor_id") != actor.pk:
        return None
    upload = Upload(**{**value, "data": zlib.decompress(value["data"])})
    if upload.uploaded_at < timezone.now() - _lifetime():
        upload_forget(token=token)
        return None
    return upload


def upload_replace_preview(*, upload: Upload, batch_id: int | None) -> int | None:
    """Note the batch of `upload`'s latest clean preview; return the earlier one it replaces."""
    key = _key(upload.token) + ":batch"
    replaced = cache.get(key)
    cache.set(key, batch_id, int(_lifetime().total_seconds()))
    return replaced if replaced != batch_id else None


def upload_forget(*, token: str) -> None:
    """Forget a kept upload (its import was confirmed)."""
    if TOKEN.fullmatch(token or ""):
        cache.delete_many([_key(token), _key(token) + ":batch"])
