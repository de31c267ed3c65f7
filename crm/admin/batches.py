"""
Import batches in the staff admin: each previewed or confirmed partner list,
its progress bar while a worker imports it, its report, its full preview and
its revert. The import screens themselves are in crm.admin.sync.

Confirming, reverting and downloading a preview need crm.import_supporters,
which membership staff have and campaign managers do not.
"""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path

from crm import exports, imports
from crm.models import ImportBatch

IMPORT_PERMISSION = "crm.import_supporters"


class BatchConfirmForm(forms.Form):
    """The confirm step names the previewed batch; the file stays on the server."""

    batch = forms.ModelChoiceField(
        queryset=ImportBatch.objects.filter(status=ImportBatch.Status.PREVIEWED),
        widget=forms.HiddenInput,
        error_messages={
            "invalid_choice": "This preview was already confirmed, has expired or does not "
            "exist (a newer preview of the same file replaces it). Upload the file again to "
            "see a fresh preview."
        },
    )
    # The kept upload it was made from, forgotten once the import is confirmed.
    upload = forms.CharField(widget=forms.HiddenInput, required=False)


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
        "columns_used",
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

    @admin.display(description="columns")
    def columns_used(self, batch):
        """What each column of the file was read as: “heading” → field, or ignored."""
        columns = (batch.options or {}).get("columns") or {}
        return (
            "; ".join(
                f"“{heading}” → {imports.FIELD_LABELS[field]}" if field else f"“{heading}” ignored"
                for heading, field in columns.items()
                if not field or field in imports.FIELD_LABELS
            )
            or "—"
        )

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
