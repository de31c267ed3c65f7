"""
Partner list sync in the staff admin: the supporter import and export
screens (django-import-export's flow, with Rally's bulk services behind it:
upload, match the columns, preview, confirm; the CSV template), the partner
sync export and a segment's export link. Import batches, with their
progress and revert, are in crm.admin.batches.

crm.admin mixes these into its model admins; everything here checks the
custom permissions crm.import_supporters and crm.export_supporters, which
membership staff have and campaign managers do not.
"""

from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from import_export.admin import ExportActionMixin, ImportMixin
from import_export.formats.base_formats import CSV, XLSX
from import_export.forms import ImportForm
from import_export.signals import post_import

from crm import exports, imports
from crm.admin.batches import (  # also registers ImportBatchAdmin
    IMPORT_PERMISSION,
    BatchConfirmForm,
)
from crm.models import CampaignInterest, PartnerOptOutFile, PartnerOrganisation
from crm.resources import PREVIEW_ROWS, SupporterResource
from crm.services import partner_optouts_apply

EXPORT_PERMISSION = "crm.export_supporters"


# Forms -------------------------------------------------------------------------------


class ImportChoicesForm(forms.Form):
    """The choices an upload and each preview of it share: interests and merge options."""

    interests = forms.ModelMultipleChoiceField(
        queryset=CampaignInterest.objects.all(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Subscribe every row to these, as well as to any named in the file's "
        "Interests column.",
    )
    overwrite = forms.BooleanField(
        required=False,
        label="Replace values we already hold",
        help_text="Off (normal): the file only fills empty fields. On: the file's values "
        "replace ours, except where the file's Updated date is older than our last change.",
    )
    skip_invalid = forms.BooleanField(
        required=False,
        label="Import the valid rows when some rows have errors",
        help_text="Off (normal): any row error stops the whole file.",
    )


class PartnerImportForm(ImportForm, ImportChoicesForm):
    """django-import-export's upload form, plus the partner and the merge options."""

    partner = forms.ModelChoiceField(
        queryset=PartnerOrganisation.objects.filter(is_active=True),
        help_text="Whose list this is. Their lawful basis is recorded with every consent, and "
        "the columns matched for their last list are offered first.",
    )
    encoding = forms.ChoiceField(
        choices=list(imports.ENCODINGS.items()),
        initial="auto",
        help_text="For CSV and TSV files only.",
    )
    field_order = [
        "resource",
        "partner",
        "import_file",
        "format",
        "encoding",
        "interests",
        "overwrite",
        "skip_invalid",
    ]

    def __init__(self, formats, resources, **kwargs):
        super().__init__(formats, resources, **kwargs)
        self.fields["format"] = forms.ChoiceField(
            choices=[("", "Detect from the file name"), *imports.FORMATS.items()],
            required=False,
        )
        self.fields["import_file"].widget.attrs.pop("class", None)
        self.fields["import_file"].help_text = (
            f"CSV, TSV, XLSX or JSON, up to {imports.import_max_bytes() // 1_000_000} MB. The "
            "first row names the columns; one must hold email addresses."
        )
        self.order_fields(self.field_order)

    @property
    def media(self):
        # Rally detects the format itself; skip django-import-export's script.
        return forms.Form.media.fget(self)

    def options(self):
        data = self.cleaned_data
        return imports.ImportOptions(
            file_format=data["format"],
            encoding=data["encoding"],
            overwrite=data["overwrite"],
            skip_invalid=data["skip_invalid"],
        )


IGNORE = ("", "Ignore this column")
FIELD_CHOICES = [IGNORE, *imports.FIELD_LABELS.items()]


class ColumnMappingForm(ImportChoicesForm):
    """Which Rally field each column of a kept upload holds: one select per heading."""

    upload = forms.CharField(widget=forms.HiddenInput)

    def __init__(self, *args, upload, **kwargs):
        super().__init__(*args, **kwargs)
        self.upload = upload
        self.columns = []
        for index, (heading, examples) in enumerate(upload.columns):
            name = f"column_{index}"
            self.fields[name] = forms.ChoiceField(
                label=heading, choices=FIELD_CHOICES, required=False
            )
            self.columns.append(
                {
                    "field": self[name],
                    "heading": heading,
                    "examples": examples,
                    "note": imports.not_imported_note(heading),
                }
            )
        self.order_fields(["upload", *(f"column_{i}" for i in range(len(self.columns)))])

    @classmethod
    def initial_for(cls, upload, mapping, choices):
        """Return the form's data for `mapping` ({heading: field}) and the upload's choices."""
        initial = {
            "upload": upload.token,
            **{
                f"column_{index}": mapping.get(heading, "")
                for index, (heading, _) in enumerate(upload.columns)
            },
            "interests": [interest.pk for interest in choices["interests"]],
        }
        for name in ("overwrite", "skip_invalid"):
            if choices[name]:
                initial[name] = "on"
        return initial

    def option_fields(self):
        return [self[name] for name in ("interests", "overwrite", "skip_invalid")]

    def mapping(self):
        return {
            heading: self.cleaned_data.get(f"column_{index}", "")
            for index, (heading, _) in enumerate(self.upload.columns)
        }

    def clean(self):
        data = super().clean()
        claimed = {}
        for index, (heading, _) in enumerate(self.upload.columns):
            name = data.get(f"column_{index}")
            if not name:
                continue
            if name in claimed:
                label = imports.FIELD_LABELS[name]
                self.add_error(
                    f"column_{index}",
                    f"“{claimed[name]}” is already matched to {label}. Match only one column "
                    f"to {label}, and choose “Ignore this column” for the other.",
                )
            else:
                claimed[name] = heading
        if "email" not in claimed:
            raise forms.ValidationError(
                "No column is matched to Email. Choose the column that holds the email "
                "addresses: Rally matches supporters by their address.",
                code="no_email",
            )
        return data

    def options(self):
        return imports.ImportOptions(
            file_format=self.upload.file_format,
            encoding=self.upload.encoding,
            overwrite=self.cleaned_data["overwrite"],
            skip_invalid=self.cleaned_data["skip_invalid"],
            columns=self.mapping(),
        )


class SyncExportForm(forms.Form):
    file_format = forms.ChoiceField(
        label="Format", choices=list(exports.FILE_FORMATS.items()), initial="csv"
    )
    since = forms.DateTimeField(
        required=False,
        label="Opt-outs since",
        help_text="Leave empty to use the last sync. The date and time must be local time, "
        "e.g. 2025-05-01 09:00.",
    )


# Supporters: import and export --------------------------------------------------------


class SupporterImportExportMixin(ImportMixin, ExportActionMixin):
    """Import partner lists and export supporters from the supporter changelist."""

    resource_classes = [SupporterResource]
    import_form_class = PartnerImportForm
    import_template_name = "admin/crm/supporter/import.html"
    # The supporter page keeps its own template; single-supporter exports are
    # the GDPR JSON export.
    change_form_template = None
    show_change_form_export = False

    def has_import_permission(self, request):
        return request.user.has_perm(IMPORT_PERMISSION)

    def has_export_permission(self, request):
        return request.user.has_perm(EXPORT_PERMISSION)

    def get_export_formats(self):
        return [CSV, XLSX]

    def get_urls(self):
        return [
            path(
                "import/template.csv",
                self.admin_site.admin_view(self.import_template_view),
                name="crm_supporter_import_template",
            ),
            *super().get_urls(),
        ]

    def import_action(self, request, **kwargs):
        """Upload, match the columns, preview; show a confirm button when the preview is clean.

        The first POST carries the file: it is read, its columns guessed and,
        when an email column is found, previewed at once. The file is kept
        (crm.imports.uploads) so that each later POST, with the columns and
        options adjusted, previews it again without asking for it.
        """
        if not self.has_import_permission(request):
            raise PermissionDenied
        context = {}
        form = None
        if request.method == "POST" and "upload" in request.POST:
            answer = self._preview_again(request, context)
            if answer is not None:
                return answer
        else:
            form = self.create_import_form(request)
            if request.method == "POST" and form.is_valid():
                self._upload(request, form, context)
        context.update(self.admin_site.each_context(request))
        context.update(
            {
                "title": "Import a partner list",
                "form": form,
                "opts": self.model._meta,
                "media": self.media + (form.media if form else forms.Media()),
                "fields_list": [],
                "column_aliases": _column_help(),
                "import_error_display": self.import_error_display,
                "preview_rows": PREVIEW_ROWS,
            }
        )
        request.current_app = self.admin_site.name
        return TemplateResponse(request, [self.import_template_name], context)

    def _upload(self, request, form, context):
        upload = form.cleaned_data["import_file"]
        partner = form.cleaned_data["partner"]
        options = form.options()
        resource = SupporterResource(
            partner=partner, interests=form.cleaned_data["interests"], options=options
        )
        try:
            imports.check_size(upload.size)
            data = b"".join(upload.chunks())
            result = resource.import_data(
                None, dry_run=True, file_data=data, file_name=upload.name, user=request.user
            )
        except imports.ColumnsRejected as rejection:
            # The file is fine but its columns need matching: keep it for that.
            form.add_error("import_file", rejection.messages)
            table, mapping, result = rejection.table, rejection.mapping, None
        except imports.ImportRejected as rejection:
            form.add_error("import_file", rejection.messages)
            return
        else:
            table, mapping = result.preview.table, result.preview.plan.mapping
        kept = imports.upload_keep(
            data=data,
            file_name=upload.name,
            partner=partner,
            table=table,
            encoding=options.encoding,
            actor=request.user,
        )
        initial = ColumnMappingForm.initial_for(kept, mapping, form.cleaned_data)
        if result is None:
            # Shown as if the guess had been posted: the form names what to fix.
            mapping_form = ColumnMappingForm(initial, upload=kept)
            mapping_form.is_valid()
        else:
            mapping_form = ColumnMappingForm(upload=kept, initial=initial)
            self._show_preview(context, result, kept)
        context.update({"mapping_form": mapping_form, "upload": kept, "partner": partner})

    def _preview_again(self, request, context):
        """Preview a kept upload with the columns and options posted; None, or a redirect."""
        kept = imports.upload_read(token=request.POST["upload"], actor=request.user)
        partner = kept and PartnerOrganisation.objects.filter(pk=kept.partner_id).first()
        if partner is None:
            messages.error(
                request,
                "This upload is no longer kept (it was imported, or it is more than "
                f"{settings.RALLY_IMPORT_PREVIEW_HOURS} hours old). Choose the file again.",
            )
            return HttpResponseRedirect(reverse("admin:crm_supporter_import"))
        mapping_form = ColumnMappingForm(request.POST, upload=kept)
        context.update({"mapping_form": mapping_form, "upload": kept, "partner": partner})
        if not mapping_form.is_valid():
            return None
        resource = SupporterResource(
            partner=partner,
            interests=mapping_form.cleaned_data["interests"],
            options=mapping_form.options(),
        )
        try:
            result = resource.import_data(
                None,
                dry_run=True,
                file_data=kept.data,
                file_name=kept.file_name,
                user=request.user,
            )
        except imports.ImportRejected as rejection:
            mapping_form.add_error(None, rejection.messages)
            return None
        self._show_preview(context, result, kept)
        return None

    def _show_preview(self, context, result, kept):
        context["result"] = result
        context["plan"] = result.preview.plan
        context["duplicate_of"] = result.preview.duplicate_of
        batch = result.batch
        # A newer preview of the same upload replaces the one before, which
        # could otherwise still be confirmed from another tab.
        replaced = imports.upload_replace_preview(upload=kept, batch_id=batch and batch.pk)
        if replaced is not None:
            imports.import_discard_preview(batch_id=replaced)
        if batch is not None:
            context["confirm_form"] = BatchConfirmForm(
                initial={"batch": batch, "upload": kept.token}
            )
            context["runs_in_background"] = batch.row_count > settings.RALLY_IMPORT_ASYNC_THRESHOLD

    def import_template_view(self, request):
        """Download a CSV with the headings Rally expects and one made-up row."""
        if not self.has_import_permission(request):
            raise PermissionDenied
        headings, example = imports.template_rows(list(CampaignInterest.objects.all()[:2]))
        content = exports.write_table(headers=headings, rows=[example], file_format="csv")
        response = HttpResponse(content, content_type=exports.CONTENT_TYPES["csv"])
        response["Content-Disposition"] = 'attachment; filename="rally-import-template.csv"'
        return response

    @staticmethod
    def _batch_url(batch):
        return reverse("admin:crm_importbatch_change", args=[batch.pk])

    def process_import(self, request, **kwargs):
        """Confirm a previewed batch: inline for small files, on a worker for large ones."""
        if request.method != "POST":
            return HttpResponseRedirect(reverse("admin:crm_supporter_import"))
        if not self.has_import_permission(request):
            raise PermissionDenied
        form = BatchConfirmForm(request.POST)
        if not form.is_valid():
            messages.error(request, " ".join(form.errors.get("batch", ["Nothing to confirm."])))
            return HttpResponseRedirect(reverse("admin:crm_supporter_import"))
        batch = form.cleaned_data["batch"]
        if batch.row_count > settings.RALLY_IMPORT_ASYNC_THRESHOLD:
            if imports.import_enqueue(batch=batch, actor=request.user):
                imports.upload_forget(token=form.cleaned_data["upload"])
                messages.info(
                    request,
                    f"Importing {batch.row_count:,} rows in the background; this page shows "
                    "the progress.",
                )
            else:
                messages.error(request, "This import was already confirmed.")
            return HttpResponseRedirect(self._batch_url(batch))
        try:
            result = SupporterResource().import_data(
                None, dry_run=False, batch=batch, user=request.user
            )
        except (imports.ImportRefused, imports.ImportFailed) as error:
            messages.error(request, error.messages[0])
            return HttpResponseRedirect(self._batch_url(batch))
        imports.upload_forget(token=form.cleaned_data["upload"])
        self.add_success_message(result, request)
        post_import.send(sender=None, model=self.model)
        return HttpResponseRedirect(self._batch_url(batch))

    def add_success_message(self, result, request):
        counts = result.counts
        messages.success(
            request,
            f"Imported: {counts.get('new', 0):,} new, {counts.get('updated', 0):,} updated, "
            f"{counts.get('unchanged', 0):,} unchanged, {counts.get('skipped', 0):,} skipped; "
            f"{counts.get('subscribed', 0):,} subscriptions with consent records.",
        )

    # Export ---------------------------------------------------------------------------

    def get_valid_export_item_pks(self, request):
        # Only the posted ids need checking, not every supporter's.
        posted = request.POST.getlist("export_items")
        return self.model.objects.filter(pk__in=posted).values_list("pk", flat=True)

    def export_admin_action(self, request, queryset):
        if request.POST.get("select_across") == "1":
            # "All N supporters": export the filtered list rather than N ids.
            url = reverse("admin:crm_supporter_export")
            return HttpResponseRedirect(f"{url}?{request.GET.urlencode()}")
        return super().export_admin_action(request, queryset)

    def get_export_data(self, file_format, request, queryset, **kwargs):
        if not self.has_export_permission(request):
            raise PermissionDenied
        export_form = kwargs.get("export_form")
        columns = self.get_export_resource_fields_from_form(export_form) or list(exports.COLUMNS)
        detail = _describe_export(request, export_form)
        result = exports.supporters_export(
            supporters=queryset,
            columns=columns,
            file_format=file_format.get_extension(),
            actor=request.user,
            source="admin",
            **detail,
        )
        return result.content

    def get_export_filename(self, request, queryset, file_format):
        return f"supporters-{timezone.localdate().isoformat()}.{file_format.get_extension()}"


def _describe_export(request, export_form):
    """Describe which supporters an admin export holds, without personal data."""
    if export_form is not None and "export_items" in export_form.changed_data:
        return {"what": "selected supporters"}
    filters = {
        key: value for key, value in request.GET.items() if key not in ("q", "o", "p", "_to_field")
    }
    detail = {"filters": filters, "searched": bool(request.GET.get("q"))}
    if "segment" in filters:
        return {"what": "segment", "segment": filters["segment"], **detail}
    if "partner__id__exact" in filters:
        return {"what": "partner list", "partner": filters["partner__id__exact"], **detail}
    return {"what": "supporters", **detail}


def _column_help():
    return [
        (imports.FIELD_LABELS[name], sorted(set(aliases.split())))
        for name, aliases in imports.COLUMN_ALIASES.items()
    ]


# Partners: sync export -------------------------------------------------------------------


class PartnerSyncMixin:
    """A partner's sync export (and a link to export their list) on the partner page."""

    def get_readonly_fields(self, request, obj=None):
        return (*super().get_readonly_fields(request, obj), "sync_links")

    def get_fields(self, request, obj=None):
        fields = [name for name in super().get_fields(request, obj) if name != "sync_links"]
        if obj is None or not request.user.has_perm(EXPORT_PERMISSION):
            return fields
        return [*fields, "sync_links"]

    @admin.display(description="Sync")
    def sync_links(self, partner):
        sync = reverse("admin:crm_partnerorganisation_sync_export", args=[partner.pk])
        export = reverse("admin:crm_supporter_export")
        query = urlencode({"partner__id__exact": partner.pk})
        optouts = reverse("admin:crm_partneroptoutfile_add")
        return format_html(
            '<a class="button" href="{}">Partner sync export…</a> '
            '<a class="button" href="{}?{}">Export their supporters…</a> '
            '<a class="button" href="{}?partner={}">Apply their opt-out file…</a>',
            sync,
            export,
            query,
            optouts,
            partner.pk,
        )

    def get_urls(self):
        return [
            path(
                "<int:pk>/sync-export/",
                self.admin_site.admin_view(self.sync_export_view),
                name="crm_partnerorganisation_sync_export",
            ),
            *super().get_urls(),
        ]

    def sync_export_view(self, request, pk):
        if not request.user.has_perm(EXPORT_PERMISSION):
            raise PermissionDenied
        partner = get_object_or_404(PartnerOrganisation, pk=pk)
        form = SyncExportForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            result = exports.partner_sync_export(
                partner=partner,
                file_format=form.cleaned_data["file_format"],
                since=form.cleaned_data["since"],
                actor=request.user,
            )
            response = HttpResponse(result.content, content_type=result.content_type)
            response["Content-Disposition"] = f'attachment; filename="{result.file_name}"'
            return response
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "partner": partner,
            "form": form,
            "everyone": exports.partner_supporters(partner).count(),
            "title": f"Partner sync export: {partner}",
        }
        return TemplateResponse(request, "admin/crm/partnerorganisation/sync_export.html", context)


# Segments: export link -------------------------------------------------------------------


class SegmentExportMixin:
    """A link from a segment to the supporter export, filtered to its members."""

    def get_readonly_fields(self, request, obj=None):
        return (*super().get_readonly_fields(request, obj), "export_link")

    def get_fieldsets(self, request, obj=None):
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is not None and request.user.has_perm(EXPORT_PERMISSION):
            fieldsets.append(("Export", {"fields": ("export_link",)}))
        return fieldsets

    @admin.display(description="members")
    def export_link(self, segment):
        url = reverse("admin:crm_supporter_export")
        return format_html(
            '<a class="button" href="{}?{}">Export this segment (CSV or XLSX)…</a>',
            url,
            urlencode({"segment": segment.pk}),
        )


# Partners: their opt-outs, sent back ---------------------------------------------------


class PartnerOptOutForm(forms.ModelForm):
    file = forms.FileField(
        label="Opt-out file",
        help_text="A CSV (or a plain list, one address a line) of the people who left the "
        "partner's list; the column headed “Email” (or the first) is read. What the partner "
        "brought is withdrawn for each: their opt-in to the partner and the topics their lists "
        "subscribed them to. Topics they chose themselves stay.",
    )

    class Meta:
        model = PartnerOptOutFile
        fields = ("partner",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["partner"].queryset = PartnerOrganisation.objects.filter(is_active=True)

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > imports.import_max_bytes():
            raise forms.ValidationError(
                f"The file is larger than {imports.import_max_bytes() // 1_000_000} MB."
            )
        return upload


@admin.register(PartnerOptOutFile)
class PartnerOptOutFileAdmin(admin.ModelAdmin):
    """Applying a partner's opt-out file (the add page) and its receipt (the change page)."""

    list_display = ("file_name", "partner", "created_at", "rows", "matched", "withdrawn", "nobody")
    list_filter = ("partner",)
    readonly_fields = (
        "partner",
        "file_name",
        "created_at",
        "created_by",
        "rows",
        "matched",
        "withdrawn",
        "topics_withdrawn",
        "partner_opt_ins_withdrawn",
        "unmatched_rows",
        "file_hash",
    )

    @admin.display(description="Topics withdrawn")
    def topics_withdrawn(self, receipt):
        return receipt.subscriptions_withdrawn

    @admin.display(description="Opt-ins to the partner withdrawn")
    def partner_opt_ins_withdrawn(self, receipt):
        return receipt.opt_ins_withdrawn

    @admin.display(description="Matched nobody")
    def nobody(self, receipt):
        return len(receipt.unmatched) + len(receipt.invalid)

    @admin.display(description="Rows that matched nobody")
    def unmatched_rows(self, receipt):
        count = self.nobody(receipt)
        if not count:
            return "None"
        return format_html(
            "{} row{} (no supporter with that address, or no address). "
            '<a class="button" href="{}">Download them (CSV)</a>',
            count,
            "" if count == 1 else "s",
            reverse("admin:crm_partneroptoutfile_unmatched", args=[receipt.pk]),
        )

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = PartnerOptOutForm
            kwargs["fields"] = ("partner", "file")
        form = super().get_form(request, obj, change=change, **kwargs)
        partner = form.base_fields.get("partner")
        if partner is not None and hasattr(partner.widget, "widget"):
            partner.widget = partner.widget.widget  # a plain choice: no edit or add icons
        return form

    def add_view(self, request, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "title": "Apply a partner's opt-out file"}
        return super().add_view(request, form_url, extra_context)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        # One button: applying a file is not "saving" something to edit later.
        context.update(show_save_and_add_another=False, show_save_and_continue=False)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_fields(self, request, obj=None):
        return ("partner", "file") if obj is None else self.readonly_fields

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.readonly_fields

    def save_model(self, request, obj, form, change):
        # The service writes the receipt; the admin shows it as the added object.
        receipt = partner_optouts_apply(
            partner=form.cleaned_data["partner"],
            file=form.cleaned_data["file"],
            file_name=form.cleaned_data["file"].name,
            actor=request.user,
        )
        obj.__dict__.update({k: v for k, v in receipt.__dict__.items() if k != "_state"})
        obj._state.adding = False
        nobody = self.nobody(receipt)
        messages.success(
            request,
            f"Applied: {receipt.withdrawn} of the {receipt.matched} people matched had something "
            f"from {receipt.partner} withdrawn; {nobody} row{'' if nobody == 1 else 's'} "
            "matched nobody.",
        )

    def save_related(self, request, form, formsets, change):
        pass

    def response_add(self, request, obj, post_url_continue=None):
        return HttpResponseRedirect(reverse("admin:crm_partneroptoutfile_change", args=[obj.pk]))

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_urls(self):
        return [
            path(
                "<int:pk>/unmatched.csv",
                self.admin_site.admin_view(self.unmatched_view),
                name="crm_partneroptoutfile_unmatched",
            ),
            *super().get_urls(),
        ]

    def unmatched_view(self, request, pk):
        if not self.has_view_permission(request):
            raise PermissionDenied
        receipt = get_object_or_404(PartnerOptOutFile, pk=pk)
        rows = [
            *(
                [number, value, "No supporter has this address"]
                for number, value in receipt.unmatched
            ),
            *([number, value, "Not an email address"] for number, value in receipt.invalid),
        ]
        content = exports.write_table(
            headers=["Row", "As sent", "Problem"], rows=sorted(rows), file_format="csv"
        )
        response = HttpResponse(content, content_type=exports.CONTENT_TYPES["csv"])
        name = f"{receipt.partner.slug}-opt-outs-{receipt.pk}-unmatched.csv"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response
