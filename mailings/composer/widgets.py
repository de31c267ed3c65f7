"""
BlocksWidget: the block composer as a form widget.

The value travels as JSON in one hidden input (the format described in
mailings/composer/__init__.py); mailings/static/mailings/composer.js builds the
editor around it from static files only (the admin's Content-Security-Policy
allows no inline script or style). Use it for any JSON field of blocks:

    widgets = {"blocks": BlocksWidget(allow_html=user.has_perm("mailings.edit_html_block"),
                                      upload_url=reverse("admin:mailings_composer_upload"))}

The widget only shows what staff may do: the server decides, in
mailings.composer.blocks.clean_blocks(..., allow_html=...).
"""

import json

from django import forms
from django.utils.html import format_html

# Block types offered in the "Add a block" bar, in order, with the label staff see.
BLOCK_TYPES = (
    ("heading", "Heading"),
    ("text", "Text"),
    ("image", "Image"),
    ("button", "Button"),
    ("quote", "Quote"),
    ("divider", "Divider"),
    ("columns", "Two columns"),
    ("action", "Act now box"),
    ("html", "HTML"),
)

# What the merge-field menu inserts: (label, merge field as mailings.emails reads it,
# kind). "text" fields go into words; "link" fields are addresses (a link in rich
# text, or the whole address of a button).
MERGE_FIELDS = (
    ("First name", "first_name", "text"),
    ("Last name", "last_name", "text"),
    ("Full name", "full_name", "text"),
    ("Postcode", "postcode", "text"),
    ("Link to their email preferences", "preferences_url", "link"),
    ("Unsubscribe link", "unsubscribe_url", "link"),
)


class BlocksWidget(forms.Widget):
    """A hidden JSON input plus the static block editor that fills it."""

    def __init__(
        self,
        attrs=None,
        *,
        allow_html=False,
        upload_url="",
        block_types=BLOCK_TYPES,
        merge_fields=MERGE_FIELDS,
    ):
        super().__init__(attrs)
        self.allow_html = allow_html
        self.upload_url = upload_url
        self.block_types = block_types
        self.merge_fields = merge_fields

    @property
    def media(self):
        return forms.Media(
            css={
                "all": [
                    "django_prose_editor/material-icons.css",
                    "django_prose_editor/editor.css",
                    "django_prose_editor/overrides.css",
                    "mailings/composer.css",
                ]
            },
            # A module: it imports the rich-text editor by its path, so no
            # inline import map is needed.
            js=[forms.Script("mailings/composer.js", type="module")],
        )

    def format_value(self, value):
        if value in (None, ""):
            return "[]"
        if isinstance(value, str):
            return value
        return json.dumps(value)

    def value_from_datadict(self, data, files, name):
        return data.get(name)

    def render(self, name, value, attrs=None, renderer=None):
        attrs = self.build_attrs(self.attrs, attrs)
        element_id = attrs.get("id") or f"id_{name}"
        settings = {
            "allowHtml": bool(self.allow_html),
            "uploadUrl": str(self.upload_url or ""),
            "types": [{"type": kind, "label": label} for kind, label in self.block_types],
            "mergeFields": [
                {"label": label, "name": field, "kind": kind}
                for label, field, kind in self.merge_fields
            ],
        }
        return format_html(
            '<div class="rally-composer" data-composer="{}">'
            '<input type="hidden" name="{}" id="{}" value="{}" data-composer-value>'
            '<p class="rally-composer-loading">Loading the composer…</p>'
            "</div>",
            json.dumps(settings),
            name,
            element_id,
            self.format_value(value),
        )

    def id_for_label(self, id_):
        return id_
