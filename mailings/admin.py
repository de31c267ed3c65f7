"""
The mailings admin: compose, preview, test-send, send or schedule, watch
progress, read the report. Every button calls a service in mailings.services;
only users with mailings.send_mailing (Campaign managers, superusers) may
send, schedule, pause, resume, cancel or test-send.
"""

from csp.decorators import csp_update
from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from crm.admin.common import EstimatingPaginator, ReadOnlyAdmin
from crm.models import Supporter
from crm.segments import SegmentRuleError
from crm.segments import changes_since as segment_changes
from crm.services import supporter_get
from mailings import emails, reports, services
from mailings.forms import TestSendForm
from mailings.models import Delivery, Mailing

SEND_PERMISSION = "mailings.send_mailing"


class MailingForm(forms.ModelForm):
    class Meta:
        model = Mailing
        fields = (
            "name",
            "subject",
            "preheader",
            "body_html",
            "body_text",
            "from_name",
            "from_email",
            "reply_to",
            "interests",
            "include_segments",
            "exclude_segments",
        )
        widgets = {
            "body_html": forms.Textarea(attrs={"rows": 18, "class": "vLargeTextField"}),
            "body_text": forms.Textarea(attrs={"rows": 8, "class": "vLargeTextField"}),
        }

    def clean(self):
        cleaned = super().clean()
        for field in ("subject", "preheader", "body_html", "body_text"):
            try:
                emails.check_merge_fields(cleaned.get(field) or "")
            except emails.MergeFieldError as error:
                self.add_error(field, error.message)
        return cleaned


class ScheduleForm(forms.Form):
    send_at = forms.DateTimeField(
        label="Send at",
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="In the site's time zone.",
    )


def _find_supporter(value):
    value = (value or "").strip()
    if not value:
        return None
    if value.isdigit():
        return Supporter.objects.filter(pk=int(value)).first()
    return supporter_get(value)


@admin.register(Mailing)
class MailingAdmin(admin.ModelAdmin):
    form = MailingForm
    list_display = ("name", "subject", "status_badge", "when", "recipients", "created_at")
    list_filter = ("status",)
    search_fields = ("name", "subject")
    date_hierarchy = "created_at"
    filter_horizontal = ("interests", "include_segments", "exclude_segments")
    readonly_fields = ("status", "scheduled_at", "started_at", "finished_at", "recipient_count")
    fieldsets = (
        (None, {"fields": ("name",)}),
        (
            "Content",
            {
                "fields": ("subject", "preheader", "body_html", "body_text"),
                "description": (
                    "The body is placed in the branded email template, with an unsubscribe "
                    'link in its footer. Merge fields: {{ first_name|default:"friend" }}, '
                    "{{ last_name }}, {{ full_name }}, {{ postcode }}, {{ unsubscribe_url }}, "
                    "{{ preferences_url }}."
                ),
            },
        ),
        ("Sender", {"fields": ("from_name", "from_email", "reply_to"), "classes": ("collapse",)}),
        (
            "Audience",
            {
                "fields": ("interests", "include_segments", "exclude_segments"),
                "description": (
                    "Supporters subscribed to any chosen interest, plus members of the included "
                    "segments who are subscribed to at least one interest, minus members of the "
                    "excluded segments. Suppressed, unsubscribed, bounced and erased supporters "
                    "never receive it."
                ),
            },
        ),
        (
            "Sending",
            {"fields": ("status", "scheduled_at", "started_at", "finished_at", "recipient_count")},
        ),
    )

    @admin.display(description="status", ordering="status")
    def status_badge(self, mailing):
        return mailing.get_status_display()

    @admin.display(description="scheduled / sent")
    def when(self, mailing):
        moment = mailing.finished_at or mailing.started_at or mailing.scheduled_at
        return timezone.localtime(moment).strftime("%d %b %Y %H:%M") if moment else "—"

    @admin.display(description="recipients", ordering="recipient_count")
    def recipients(self, mailing):
        return "—" if mailing.recipient_count is None else f"{mailing.recipient_count:,}"

    # -- permissions: content is frozen once sending starts --

    def has_change_permission(self, request, obj=None):
        if obj is not None and not obj.is_editable:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and (not obj.is_editable or obj.deliveries.exists()):
            return False
        return super().has_delete_permission(request, obj)

    def save_model(self, request, obj, form, change):
        if change:
            services.mailing_update_check(mailing=obj)
        elif obj.created_by_id is None:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    # -- extra pages --

    def get_urls(self):
        view = self.admin_site.admin_view
        # The preview's sandboxed frame (no scripts) shows the email as sent, with
        # its <style> and remote images; a srcdoc frame obeys its page's policy.
        preview = csp_update({"style-src": ["'unsafe-inline'"], "img-src": ["https:", "http:"]})
        own = [
            path(
                "<int:pk>/preview/",
                view(preview(self.preview_view)),
                name="mailings_mailing_preview",
            ),
            # After a refused test send, the preview page is shown again from here.
            path(
                "<int:pk>/test-send/",
                view(preview(self.test_send_view)),
                name="mailings_mailing_test",
            ),
            path("<int:pk>/send/", view(self.send_view), name="mailings_mailing_send"),
            path("<int:pk>/schedule/", view(self.schedule_view), name="mailings_mailing_schedule"),
            path("<int:pk>/report/", view(self.report_view), name="mailings_mailing_report"),
            path(
                "<int:pk>/progress.json",
                view(self.progress_view),
                name="mailings_mailing_progress",
            ),
            path(
                "<int:pk>/do/<slug:action>/",
                view(require_POST(self.action_view)),
                name="mailings_mailing_action",
            ),
        ]
        return own + super().get_urls()

    def _mailing(self, request, pk, *, send=False):
        mailing = get_object_or_404(Mailing, pk=pk)
        if not self.has_view_permission(request, mailing):
            raise PermissionDenied
        if send and not request.user.has_perm(SEND_PERMISSION):
            raise PermissionDenied
        return mailing

    def _back(self, mailing):
        return HttpResponseRedirect(reverse("admin:mailings_mailing_change", args=[mailing.pk]))

    def _context(self, request, mailing, **extra):
        return {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": mailing,
            "mailing": mailing,
            "can_send": request.user.has_perm(SEND_PERMISSION),
            **extra,
        }

    def audience_summary(self, mailing):
        """Return (exact recipient count or None, warnings) for a mailing not yet sent."""
        warnings = emails.content_warnings(mailing)
        count = None
        try:
            if mailing.recipient_count is not None:
                count = mailing.recipient_count
            else:
                count = mailing.audience().count()
        except SegmentRuleError as error:
            warnings.append(f"A segment of the audience cannot be evaluated: {error.message}")
        if mailing.is_editable:
            segments = [
                *mailing.include_segments.values_list("pk", flat=True),
                *mailing.exclude_segments.values_list("pk", flat=True),
            ]
            now = "" if count is None else f" This mailing would now go to {count:,} supporters."
            warnings += [change + now for change in segment_changes(segments, mailing.updated_at)]
        if not mailing.interests.exists() and not mailing.include_segments.exists():
            warnings.append("No audience chosen: pick at least one interest or segment.")
        elif count == 0:
            warnings.append("Nobody would receive this mailing (the audience is empty).")
        if not mailing.interests.exists():
            warnings.append(
                "No campaign interest chosen: the unsubscribe link leads to the preference "
                "centre, and only supporters subscribed to at least one interest receive it."
            )
        elif mailing.include_segments.exists():
            warnings.append(
                "Included segments add nobody to a mailing with interests: it goes only to "
                "their subscribers. Remove the interests to send to segment members instead."
            )
        return count, warnings

    def change_view(self, request, object_id, form_url="", extra_context=None):
        mailing = self.get_object(request, object_id)
        extra_context = extra_context or {}
        if mailing is not None:
            count, warnings = self.audience_summary(mailing)
            extra_context.update(
                recipient_estimate=count,
                warnings=warnings,
                notes=emails.content_notes(mailing),
                can_send=request.user.has_perm(SEND_PERMISSION),
                schedule_form=ScheduleForm(
                    initial={
                        "send_at": mailing.scheduled_at and timezone.localtime(mailing.scheduled_at)
                    }
                ),
                progress=None if mailing.is_editable else reports.progress(mailing),
            )
        return super().change_view(request, object_id, form_url, extra_context)

    def preview_view(self, request, pk, test_form=None):
        mailing = self._mailing(request, pk)
        chosen = _find_supporter(request.GET.get("supporter"))
        not_found = bool(request.GET.get("supporter")) and chosen is None
        supporter = chosen or services.sample_supporter()
        in_audience = None
        if chosen is not None:
            in_audience = mailing.audience().filter(pk=chosen.pk).exists()
        count, warnings = self.audience_summary(mailing)
        rendered = error = None
        try:
            message = emails.PreparedMailing(mailing).message(
                supporter, links_for=emails.PREVIEW_LINKS
            )
            rendered = {
                "subject": message.subject,
                "html": message.alternatives[0][0],
                "text": message.body,
                "from": message.from_email,
                "headers": message.extra_headers,
            }
        except emails.MergeFieldError as problem:
            error = problem.message
        return TemplateResponse(
            request,
            "admin/mailings/mailing/preview.html",
            self._context(
                request,
                mailing,
                title=f"Preview: {mailing}",
                rendered=rendered,
                error=error,
                supporter=chosen,
                supporter_query=request.GET.get("supporter", ""),
                not_found=not_found,
                in_audience=in_audience,
                recipient_estimate=count,
                warnings=warnings,
                notes=emails.content_notes(mailing),
                test_form=test_form
                or TestSendForm(initial={"supporter": request.GET.get("supporter", "")}),
            ),
        )

    def test_send_view(self, request, pk):
        mailing = self._mailing(request, pk, send=True)
        if request.method != "POST":
            return HttpResponseRedirect(reverse("admin:mailings_mailing_preview", args=[pk]))
        form = TestSendForm(request.POST)
        if not form.is_valid():
            messages.error(request, "The test was not sent: see the test send form below.")
            # The page again, with what was typed and the errors beside it.
            return self.preview_view(request, pk, test_form=form)
        to = ([request.user.email] if request.user.email else []) + form.cleaned_data["also_to"]
        supporter = _find_supporter(form.cleaned_data["supporter"])
        try:
            sent = services.mailing_send_test(
                mailing=mailing, to=to, supporter=supporter, actor=request.user
            )
        except services.MailingRefused as error:
            messages.error(request, error.message)
            return self.preview_view(request, pk, test_form=form)
        messages.success(request, f"Test sent to {', '.join(to)} ({sent} message(s)).")
        return HttpResponseRedirect(reverse("admin:mailings_mailing_preview", args=[pk]))

    def send_view(self, request, pk):
        mailing = self._mailing(request, pk, send=True)
        if request.method == "POST":
            try:
                services.mailing_send_now(mailing=mailing, actor=request.user)
            except services.MailingRefused as error:
                messages.error(request, error.message)
            else:
                messages.success(request, f"“{mailing}” is being sent.")
            return self._back(mailing)
        count, warnings = self.audience_summary(mailing)
        return TemplateResponse(
            request,
            "admin/mailings/mailing/confirm_send.html",
            self._context(
                request,
                mailing,
                title=f"Send “{mailing}” now?",
                recipient_estimate=count,
                warnings=warnings,
            ),
        )

    def schedule_view(self, request, pk):
        mailing = self._mailing(request, pk, send=True)
        if request.method != "POST":
            return self._back(mailing)
        form = ScheduleForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Choose a date and time to send at.")
            return self._back(mailing)
        try:
            services.mailing_schedule(
                mailing=mailing, send_at=form.cleaned_data["send_at"], actor=request.user
            )
        except services.MailingRefused as error:
            messages.error(request, error.message)
        else:
            when = timezone.localtime(mailing.scheduled_at).strftime("%d %b %Y at %H:%M")
            messages.success(request, f"“{mailing}” will be sent on {when}.")
        return self._back(mailing)

    ACTIONS = {
        "pause": (services.mailing_pause, "Paused. Messages already handed to the ESP still go."),
        "resume": (services.mailing_resume, "Sending again."),
        "cancel": (services.mailing_cancel, "Cancelled. Nothing more will be sent."),
        "unschedule": (services.mailing_unschedule, "Back to draft; it will not be sent."),
    }

    def action_view(self, request, pk, action):
        if action == "duplicate":
            mailing = self._mailing(request, pk)
            if not self.has_add_permission(request):
                raise PermissionDenied
            copy = services.mailing_duplicate(mailing=mailing, actor=request.user)
            messages.success(request, "A new draft with the same content and audience.")
            return self._back(copy)
        mailing = self._mailing(request, pk, send=True)
        if action == "resend-unknown":
            count = services.deliveries_resend_unknown(mailing=mailing, actor=request.user)
            messages.success(request, f"{count:,} deliveries of unknown fate queued again.")
            return self._back(mailing)
        if action not in self.ACTIONS:
            raise PermissionDenied
        service, done = self.ACTIONS[action]
        try:
            service(mailing=mailing, actor=request.user)
        except services.MailingRefused as error:
            messages.error(request, error.message)
        else:
            messages.success(request, done)
        return self._back(mailing)

    def progress_view(self, request, pk):
        mailing = self._mailing(request, pk)
        return JsonResponse(reports.progress(mailing))

    def report_view(self, request, pk):
        mailing = self._mailing(request, pk)
        return TemplateResponse(
            request,
            "admin/mailings/mailing/report.html",
            self._context(
                request,
                mailing,
                title=f"Report: {mailing}",
                report=reports.report(mailing),
                progress=reports.progress(mailing),
            ),
        )


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    """Read-only: one row per recipient, to see who failed and why."""

    list_display = ("mailing", "supporter_link", "status", "attempts", "sent_at", "error")
    list_filter = ("status", "mailing")
    list_select_related = ("mailing", "supporter")
    raw_id_fields = ("mailing", "supporter")
    show_full_result_count = False
    # Millions of rows: count up to a limit, then PostgreSQL's estimate.
    paginator = EstimatingPaginator

    @admin.display(description="supporter")
    def supporter_link(self, delivery):
        url = reverse("admin:crm_supporter_change", args=[delivery.supporter_id])
        return format_html('<a href="{}">#{}</a>', url, delivery.supporter_id)
