"""
Partner list sync in the staff admin: the supporter import and export
screens (django-import-export's flow, with Rally's bulk services behind it),
import batches with their progress and revert, the partner sync export and
a segment's export link.

crm.admin mixes these into its model admins; everything here checks the
custom permissions crm.import_supporters and crm.export_supporters, which
membership staff have and campaign managers do not.
"""

from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from import_export.admin import ExportActionMixin, ImportMixin
from import_export.formats.base_formats import CSV, XLSX
from import_export.forms import ImportForm
from import_export.signals import post_import

from crm import exports, imports
from crm.models import CampaignInterest, ImportBatch, PartnerOrganisation
from crm.resources import PREVIEW_ROWS, SupporterResource

IMPORT_PERMISSION = "crm.import_supporters"
EXPORT_PERMISSION = "crm.export_supporters"


# Forms -------------------------------------------------------------------------------


class PartnerImportForm(ImportForm):
    """django-import-export's upload form, plus the partner and the merge options."""

    partner = forms.ModelChoiceField(
        queryset=PartnerOrganisation.objects.filter(is_active=True),
        help_text="Whose list this is. Their lawful basis is recorded with every consent.",
    )
    interests = forms.ModelMultipleChoiceField(
        queryset=CampaignInterest.objects.all(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Subscribe every row to these, as well as to any named in the file's "
        "Interests column.",
    )
    encoding = forms.ChoiceField(
        choices=list(imports.ENCODINGS.items()),
        initial="auto",
        help_text="For CSV and TSV files only.",
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


class BatchConfirmForm(forms.Form):
    """The confirm step names the previewed batch; the file stays on the server."""

    batch = forms.ModelChoiceField(
        queryset=ImportBatch.objects.filter(status=ImportBatch.Status.PREVIEWED),
        widget=forms.HiddenInput,
        error_messages={
            "invalid_choice": "This preview was already confirmed, has expired or does not "
            "exist. Upload the file again to see a fresh preview."
        },
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

    def import_action(self, request, **kwargs):
        """Upload and dry run: show the plan row by row, and a confirm button if it is clean."""
        if not self.has_import_permission(request):
            raise PermissionDenied
        form = self.create_import_form(request)
        context = {}
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["import_file"]
            resource = SupporterResource(
                partner=form.cleaned_data["partner"],
                interests=form.cleaned_data["interests"],
                options=form.options(),
            )
            try:
                imports.check_size(upload.size)
                result = resource.import_data(
                    None,
                    dry_run=True,
                    file_data=b"".join(upload.chunks()),
                    file_name=upload.name,
                    user=request.user,
                )
            except imports.ImportRejected as rejection:
                form.add_error("import_file", rejection.messages)
            else:
                context["result"] = result
                context["plan"] = result.preview.plan
                context["duplicate_of"] = result.preview.duplicate_of
                if result.batch is not None:
                    context["confirm_form"] = BatchConfirmForm(initial={"batch": result.batch})
                    context["runs_in_background"] = (
                        result.batch.row_count > settings.RALLY_IMPORT_ASYNC_THRESHOLD
                    )
        context.update(self.admin_site.each_context(request))
        context.update(
            {
                "title": "Import a partner list",
                "form": form,
                "opts": self.model._meta,
                "media": self.media + form.media,
                "fields_list": [],
                "column_aliases": _column_help(),
                "import_error_display": self.import_error_display,
                "preview_rows": PREVIEW_ROWS,
            }
        )
        request.current_app = self.admin_site.name
        return TemplateResponse(request, [self.import_template_name], context)

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
        return format_html(
            '<a class="button" href="{}">Partner sync export…</a> '
            '<a class="button" href="{}?{}">Export their supporters…</a>',
            sync,
            export,
            query,
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


# Import batches ----------------------------------------------------------------------------


@admin.register(ImportBatch)
class ImportBatchAdmin(admin.ModelAdmin):
    list_display = ("created_at", "partner", "file_name", "status", "rows", "outcome", "created_by")
    list_filter = ("status", "partner")
    list_select_related = ("partner", "created_by")
    search_fields = ("file_name",)
    change_form_template = "admin/crm/importbatch/change_form.html"
    fields = (
        "partner",
        "file_name",
        "status",
        "outcome",
        "interest_names",
        "options",
        "file_hash",
        "created_by",
        "created_at",
        "confirmed_by",
        "started_at",
        "finished_at",
        "reverted_by",
        "reverted_at",
        "error",
    )
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="rows", ordering="row_count")
    def rows(self, batch):
        return f"{batch.row_count:,}"

    @admin.display(description="outcome")
    def outcome(self, batch):
        return _counts_summary(batch.counts)

    @admin.display(description="interests for every row")
    def interest_names(self, batch):
        return ", ".join(str(interest) for interest in batch.interests.all()) or "—"

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path(
                "<int:pk>/progress.json", view(self.progress_view), name="crm_importbatch_progress"
            ),
            path("<int:pk>/revert/", view(self.revert_view), name="crm_importbatch_revert"),
            path("<int:pk>/report.csv", view(self.report_view), name="crm_importbatch_report"),
            path("<int:pk>/preview.csv", view(self.preview_view), name="crm_importbatch_preview"),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        batch = get_object_or_404(ImportBatch, pk=object_id)
        can_import = request.user.has_perm(IMPORT_PERMISSION)
        extra_context = {
            **(extra_context or {}),
            "batch": batch,
            "in_progress": batch.status in (ImportBatch.Status.QUEUED, ImportBatch.Status.RUNNING),
            "can_confirm": can_import and batch.status == ImportBatch.Status.PREVIEWED,
            "can_revert": can_import and batch.status == ImportBatch.Status.DONE,
            "confirm_form": BatchConfirmForm(initial={"batch": batch}),
            "report": batch.report[:200],
            "report_more": max(len(batch.report) - 200, 0),
            "progress": imports.import_progress(batch_id=batch.pk),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def progress_view(self, request, pk):
        """A small JSON document the batch page polls to move its progress bar."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        batch = get_object_or_404(ImportBatch, pk=pk)
        progress = imports.import_progress(batch_id=batch.pk)
        total = progress.get("total") or batch.row_count or 1
        done = progress.get("done", 0)
        if batch.status == ImportBatch.Status.DONE:
            done = total
        return JsonResponse(
            {
                "status": batch.status,
                "status_label": batch.get_status_display(),
                "stage": progress.get("stage", ""),
                "done": done,
                "total": total,
                "percent": min(100, round(100 * done / total)),
                "finished": batch.status
                not in (ImportBatch.Status.QUEUED, ImportBatch.Status.RUNNING),
                "outcome": _counts_summary(batch.counts),
                "error": batch.error,
            }
        )

    def revert_view(self, request, pk):
        if not request.user.has_perm(IMPORT_PERMISSION):
            raise PermissionDenied
        batch = get_object_or_404(ImportBatch, pk=pk)
        if request.method == "POST":
            try:
                undone = imports.import_revert(batch=batch, actor=request.user)
            except imports.ImportRefused as refusal:
                messages.error(request, refusal.messages[0])
            else:
                messages.success(
                    request,
                    f"Reverted: {undone['deleted_supporters']:,} supporters removed, "
                    f"{undone['withdrawn_subscriptions']:,} subscriptions withdrawn; "
                    f"{undone['kept_supporters']:,} supporters and "
                    f"{undone['kept_subscriptions']:,} subscriptions were kept because they "
                    "changed since.",
                )
            return redirect("admin:crm_importbatch_change", batch.pk)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "batch": batch,
            "title": "Revert this import?",
        }
        return TemplateResponse(request, "admin/crm/importbatch/revert_confirm.html", context)

    def report_view(self, request, pk):
        """Download the rows a batch skipped, merged or refused, with the reasons."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        batch = get_object_or_404(ImportBatch, pk=pk)
        content = exports.write_table(
            headers=["Row", "Outcome", "Reason"], rows=batch.report, file_format="csv"
        )
        response = HttpResponse(content, content_type=exports.CONTENT_TYPES["csv"])
        response["Content-Disposition"] = f'attachment; filename="import-{batch.pk}-report.csv"'
        return response

    def preview_view(self, request, pk):
        """Download the full row-by-row preview of a batch waiting for confirmation."""
        if not request.user.has_perm(IMPORT_PERMISSION):
            raise PermissionDenied
        batch = get_object_or_404(ImportBatch, pk=pk, status=ImportBatch.Status.PREVIEWED)
        preview = imports.import_replan(batch=batch)
        plan = preview.plan
        rows = [
            [row.number, row.email, imports.OUTCOME_LABELS[row.outcome], plan.describe(row)]
            for row in plan.rows
        ]
        content = exports.write_table(
            headers=["Row", "Email", "Outcome", "What happens"], rows=rows, file_format="csv"
        )
        exports.export_audit(
            actor=request.user,
            source="admin",
            what="import preview",
            rows=len(rows),
            columns=["row", "email", "outcome", "what happens"],
            file_format="csv",
            batch=batch.pk,
        )
        response = HttpResponse(content, content_type=exports.CONTENT_TYPES["csv"])
        response["Content-Disposition"] = f'attachment; filename="import-{batch.pk}-preview.csv"'
        return response


def _counts_summary(counts):
    if not counts:
        return "—"
    parts = [
        f"{counts.get(key, 0):,} {label.lower()}"
        for key, label in imports.OUTCOME_LABELS.items()
        if counts.get(key)
    ]
    reverted = counts.get("reverted")
    if reverted:
        parts.append(
            f"reverted: {reverted['deleted_supporters']:,} removed, "
            f"{reverted['withdrawn_subscriptions']:,} subscriptions withdrawn"
        )
    return ", ".join(parts) or "no rows"
