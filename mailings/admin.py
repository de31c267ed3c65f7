"""
The mailings admin: compose, preview, test-send, send or schedule, watch
progress, read the report. Every button calls a service in mailings.services;
only users with mailings.send_mailing (Campaign managers, superusers) may
send, schedule, pause, resume, cancel or test-send.
"""

from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import FloatField
from django.db.models.fields.json import KT
from django.db.models.functions import Cast
from django.http import HttpResponse, HttpResponseRedirect, JsonResponse
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
from mailings import abtests, emails, report_people, reports, services
from mailings.composer import blocks as composer_blocks
from mailings.composer import checks
from mailings.composer import views as composer_views
from mailings.composer.render import RenderError
from mailings.composer.widgets import BlocksWidget
from mailings.exceptions import ListRefused
from mailings.forms import TestSendForm
from mailings.models import ABTest, Delivery, EmailTemplate, Mailing, Variant

SEND_PERMISSION = "mailings.send_mailing"
HTML_PERMISSION = "mailings.edit_html_block"
# The report's lists name supporters; making a segment of one, or a file, is
# what the CRM's own segment and export permissions allow. Campaign managers
# may look at the lists; membership staff (and superusers) may also make
# segments and files of them, as crm.roles decides for the rest of the CRM.
PEOPLE_PERMISSION = "crm.view_supporter"
SEGMENT_PERMISSION = "crm.add_segment"
EXPORT_PERMISSION = "crm.export_supporters"
PEOPLE_PER_PAGE = 50
# What can stop a newsletter being shown: a merge field Rally does not know,
# a block saved before a rule existed, HTML the email layout cannot read.
PREVIEW_ERRORS = (emails.MergeFieldError, composer_blocks.BlockError, RenderError)


def _checks_context(mailing):
    """Return the accessibility and quality check's problems for the mailing's pages."""
    problems = checks.check_mailing(mailing)
    return {"problems": problems, "blocking": any(problem.blocking for problem in problems)}


def _as_saved(blocks):
    """Return `blocks` as clean_blocks would save them, to compare an HTML block with.

    Raw HTML is sanitised on save, so a block stored before that rule would
    otherwise look changed to staff who may only keep it.
    """
    try:
        return composer_blocks.clean_blocks(list(blocks or ()), allow_html=True)
    except composer_blocks.BlockError:
        return list(blocks or ())


def _problem_text(error):
    return getattr(error, "message", None) or "; ".join(getattr(error, "messages", [str(error)]))


class MailingForm(forms.ModelForm):
    # Set by MailingAdmin.get_form from the user's permission.
    allow_html = False

    class Meta:
        model = Mailing
        fields = (
            "name",
            "subject",
            "preheader",
            "template",
            "blocks",
            "body_text",
            "in_archive",
            "from_name",
            "from_email",
            "reply_to",
            "interests",
            "include_segments",
            "exclude_segments",
        )
        widgets = {
            "body_text": forms.Textarea(attrs={"rows": 8, "class": "vLargeTextField"}),
            # composer.js puts an "Insert merge field" menu beside these.
            "subject": forms.TextInput(attrs={"class": "vTextField", "data-merge-menu": ""}),
            "preheader": forms.TextInput(attrs={"class": "vTextField", "data-merge-menu": ""}),
        }
        labels = {"blocks": "Content", "template": "Template (header and footer)"}
        help_texts = {"subject": "What inboxes show. “Insert merge field” adds the reader's name."}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and "blocks" in self.fields:
            # A newsletter written before the composer shows its HTML as one block.
            self.initial["blocks"] = self.instance.content_blocks()

    def clean_blocks(self):
        # What was there before: the saved blocks, or those of the template a new
        # newsletter starts from (an HTML block in it may be kept by anyone).
        if self.instance.pk:
            previous = self.instance.content_blocks()
        else:
            previous = self.initial.get("blocks") or ()
        previous = _as_saved(previous)
        try:
            blocks = composer_blocks.clean_blocks(
                self.cleaned_data.get("blocks"), allow_html=self.allow_html, previous=previous
            )
            emails.check_merge_fields(*composer_blocks.merge_texts(blocks))
        except composer_blocks.BlockError as error:
            raise forms.ValidationError(error.messages) from None
        except emails.MergeFieldError as error:
            raise forms.ValidationError(error.message) from None
        return blocks

    def clean(self):
        cleaned = super().clean()
        for field in ("subject", "preheader", "body_text"):
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


def _stat_order(key):
    """Order the list by one of the figures kept in Mailing.stats (a number in JSON)."""
    return Cast(KT(f"stats__{key}"), FloatField())


class VariantFormSet(forms.BaseInlineFormSet):
    """Letters the variants A, B, C, D in the order they were added, with no gaps."""

    def save_new(self, form, commit=True):
        # A free position for now (the pair is unique); renumbered just below.
        form.instance.position = 100 + len(self.new_objects)
        return super().save_new(form, commit=commit)

    def save(self, commit=True):
        saved = super().save(commit=commit)
        if commit and self.instance.pk:
            # Ascending, each moves down to a place already vacated: never a clash.
            variants = Variant.objects.filter(mailing=self.instance).order_by("position", "pk")
            for index, variant in enumerate(variants):
                if variant.position != index:
                    Variant.objects.filter(pk=variant.pk).update(position=index)
        return saved


class ABTestInline(admin.StackedInline):
    model = ABTest
    extra = 0
    max_num = 1
    can_delete = True
    verbose_name = "A/B test"
    verbose_name_plural = "A/B test"
    fields = ("test_percent", "measure", "test_hours", "choose")


class VariantInline(admin.TabularInline):
    model = Variant
    formset = VariantFormSet
    form = forms.modelform_factory(
        Variant,
        fields=("subject", "preheader"),
        # Subject lines are read whole: wide enough to see one (mailings/abtests.css).
        widgets={
            "subject": forms.TextInput(attrs={"class": "rally-variant-text"}),
            "preheader": forms.TextInput(attrs={"class": "rally-variant-text"}),
        },
    )
    extra = 0
    max_num = abtests.MAX_VARIANTS
    fields = ("subject", "preheader")
    verbose_name = "variant"
    verbose_name_plural = "A/B test variants"

    class Media:
        css = {"all": ("mailings/abtests.css",)}


class NewsletterList(ChangeList):
    """The mailing list shows newsletters: journey emails are reached from their journey."""

    def get_queryset(self, request, exclude_parameters=None):
        queryset = super().get_queryset(request, exclude_parameters)
        return queryset.filter(kind=Mailing.Kind.NEWSLETTER)


# What the accessibility check reads: a change to any of them ends an override.
CONTENT_FIELDS = ("blocks", "template_id", "subject", "preheader", "body_text")


@admin.register(Mailing)
class MailingAdmin(admin.ModelAdmin):
    def get_changelist(self, request, **kwargs):
        return NewsletterList

    form = MailingForm
    list_display = (
        "name_and_subject",
        "status_badge",
        "when",
        "recipients",
        "opened",
        "clicked",
        "unsubscribed",
    )
    # The name column makes its own link, with the subject beneath it.
    list_display_links = None
    list_filter = ("status",)
    search_fields = ("name", "subject")
    date_hierarchy = "created_at"
    inlines = (ABTestInline, VariantInline)
    filter_horizontal = ("interests", "include_segments", "exclude_segments")
    readonly_fields = ("status", "scheduled_at", "started_at", "finished_at", "recipient_count")
    fieldsets = (
        (None, {"fields": ("name",)}),
        (
            "Content",
            {
                "fields": ("subject", "preheader", "template", "blocks"),
                "description": (
                    "Build the newsletter from blocks; it is placed between the template's "
                    "header and footer, with an unsubscribe link in the footer. Insert names "
                    "and links with “Insert merge field” on a block."
                ),
            },
        ),
        (
            "Plain text and web copy",
            {"fields": ("body_text", "in_archive"), "classes": ("collapse",)},
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
        if mailing.recipient_count is None:
            return mailing.get_status_display()
        url = reverse("admin:mailings_mailing_report", args=[mailing.pk])
        return format_html(
            '{}<br><a href="{}" class="rally-report-link">View report</a>',
            mailing.get_status_display(),
            url,
        )

    @admin.display(description="sent or scheduled")
    def when(self, mailing):
        moment = mailing.finished_at or mailing.started_at or mailing.scheduled_at
        if moment is None:
            return f"not yet (created {timezone.localtime(mailing.created_at):%-d %b %Y})"
        return timezone.localtime(moment).strftime("%-d %b %Y, %H:%M")

    @admin.display(description="sent to", ordering="recipient_count")
    def recipients(self, mailing):
        return "—" if mailing.recipient_count is None else f"{mailing.recipient_count:,}"

    @admin.display(description="mailing and subject", ordering="name")
    def name_and_subject(self, mailing):
        """The name, linked, and beneath it the subject as a reader sees it (no merge syntax)."""
        return format_html(
            '<a href="{}">{}</a><span class="rally-subject">{}</span>',
            reverse("admin:mailings_mailing_change", args=[mailing.pk]),
            mailing.name,
            emails.as_read(mailing.subject),
        )

    # Rates come from the figures kept in Mailing.stats (counted when sending
    # ends, by the report page and every few minutes by beat for a month):
    # the list never counts deliveries.
    def _rate(self, mailing, key):
        figures = mailing.stats or {}
        if mailing.is_editable or not figures.get("sent"):
            return "—"
        return format_html(
            '<span title="{} of {} sent">{}%</span>',
            f"{figures.get(key, 0):,}",
            f"{figures['sent']:,}",
            figures.get(f"{key}_percent", 0),
        )

    @admin.display(description="opened", ordering=_stat_order("opened_percent"))
    def opened(self, mailing):
        return self._rate(mailing, "opened")

    @admin.display(description="clicked", ordering=_stat_order("clicked_percent"))
    def clicked(self, mailing):
        return self._rate(mailing, "clicked")

    @admin.display(description="unsubscribed", ordering=_stat_order("unsubscribed_percent"))
    def unsubscribed(self, mailing):
        return self._rate(mailing, "unsubscribed")

    # -- permissions: content is frozen once sending starts --

    def has_change_permission(self, request, obj=None):
        if obj is not None and not obj.is_editable:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and (not obj.is_editable or obj.deliveries.exists()):
            return False
        return super().has_delete_permission(request, obj)

    # -- the composer --

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        allow_html = request.user.has_perm(HTML_PERMISSION)
        if "blocks" in form.base_fields:
            form.base_fields["blocks"].widget = BlocksWidget(
                allow_html=allow_html, upload_url=reverse("admin:mailings_composer_upload")
            )
            form.base_fields["blocks"].help_text = ""
        # modelform_factory made this class for this request alone.
        form.allow_html = allow_html
        return form

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is not None and obj.kind == Mailing.Kind.JOURNEY:
            # Its audience and sending are its journey's: only the words are edited here.
            keep = ("Content", "Plain text and web copy", "Sender", None)
            fieldsets = [(name, options) for name, options in fieldsets if name in keep]
        if obj is None or self.has_change_permission(request, obj):
            return fieldsets
        # Read-only (sent): the content as a link to its preview, not its JSON.
        swap = {"blocks": "content_summary"}
        return [
            (name, {**options, "fields": [swap.get(field, field) for field in options["fields"]]})
            for name, options in fieldsets
        ]

    def get_readonly_fields(self, request, obj=None):
        readonly = super().get_readonly_fields(request, obj)
        if obj is not None and not self.has_change_permission(request, obj):
            return (*readonly, "content_summary")
        return readonly

    @admin.display(description="content")
    def content_summary(self, mailing):
        count = len(mailing.content_blocks())
        return format_html(
            '{} block{} · <a href="{}">see it as sent, on desktop and phone</a>',
            count,
            "" if count == 1 else "s",
            reverse("admin:mailings_mailing_preview", args=[mailing.pk]),
        )

    def get_changeform_initial_data(self, request):
        """A new newsletter starts from the chosen template (?template=<id>) or the default."""
        initial = super().get_changeform_initial_data(request)
        chosen = request.GET.get("template", "")
        template = None
        if chosen.isdigit():
            template = EmailTemplate.objects.filter(pk=int(chosen)).first()
        template = template or EmailTemplate.objects.default()
        if template is not None:
            initial["template"] = template.pk
            initial["blocks"] = list(template.blocks or [])
        return initial

    def save_model(self, request, obj, form, change):
        if change:
            services.mailing_update_check(mailing=obj)
            saved = Mailing.objects.filter(pk=obj.pk).values(*CONTENT_FIELDS).first() or {}
            if obj.checks_overridden_at and any(
                saved.get(field) != getattr(obj, field) for field in CONTENT_FIELDS
            ):
                # Staff allowed sending despite the problems they saw, not despite new ones.
                obj.checks_overridden_at = obj.checks_overridden_by = None
                messages.info(
                    request,
                    "The content changed, so sending despite the check must be allowed again "
                    "if problems remain.",
                )
        elif obj.created_by_id is None:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def get_inline_instances(self, request, obj=None):
        """Leave the A/B test as it is when a form is posted without its part (a script, say).

        Once sending starts the status panel shows the test, so the form does not.
        """
        if obj is not None and (not obj.is_editable or obj.kind == Mailing.Kind.JOURNEY):
            return []
        inlines = super().get_inline_instances(request, obj)
        if request.method != "POST":
            return inlines
        return [
            inline
            for inline in inlines
            if f"{inline.get_formset(request, obj).get_default_prefix()}-TOTAL_FORMS"
            in request.POST
        ]

    # -- extra pages --

    def get_urls(self):
        view = self.admin_site.admin_view
        # The preview page keeps the admin's policy: the email, with its <style>
        # and remote images, is in frames served by preview_frame_view under a
        # policy of their own.
        own = [
            path(
                "<int:pk>/preview/",
                view(self.preview_view),
                name="mailings_mailing_preview",
            ),
            path(
                "<int:pk>/preview/frame/",
                view(self.preview_frame_view),
                name="mailings_mailing_preview_frame",
            ),
            path(
                "composer/upload/",
                view(composer_views.image_upload),
                name="mailings_composer_upload",
            ),
            path(
                "<int:pk>/checks/override/",
                view(require_POST(self.override_checks_view)),
                name="mailings_mailing_override_checks",
            ),
            path(
                "<int:pk>/save-as-template/",
                view(require_POST(self.save_as_template_view)),
                name="mailings_mailing_save_template",
            ),
            # After a refused test send, the preview page is shown again from here.
            path(
                "<int:pk>/test-send/",
                view(self.test_send_view),
                name="mailings_mailing_test",
            ),
            path("<int:pk>/send/", view(self.send_view), name="mailings_mailing_send"),
            path("<int:pk>/schedule/", view(self.schedule_view), name="mailings_mailing_schedule"),
            path("<int:pk>/report/", view(self.report_view), name="mailings_mailing_report"),
            path(
                "<int:pk>/report/people/",
                view(self.people_view),
                name="mailings_mailing_report_people",
            ),
            path(
                "<int:pk>/report/people/segment/",
                view(require_POST(self.people_segment_view)),
                name="mailings_mailing_report_segment",
            ),
            path(
                "<int:pk>/report/people/export/",
                view(require_POST(self.people_export_view)),
                name="mailings_mailing_report_export",
            ),
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
            "subject_as_read": emails.as_read(mailing.subject),
            "can_see_people": request.user.has_perm(PEOPLE_PERMISSION),
            "can_make_segment": request.user.has_perm(SEGMENT_PERMISSION),
            "can_export": request.user.has_perm(EXPORT_PERMISSION),
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
                ab_test=abtests.summary(mailing),
                **(_checks_context(mailing) if mailing.is_editable else {}),
                can_save_template=request.user.has_perm("mailings.add_emailtemplate"),
            )
        return super().change_view(request, object_id, form_url, extra_context)

    def preview_view(self, request, pk, test_form=None):
        mailing = self._mailing(request, pk)
        query = request.GET.get("supporter", "")
        chosen = _find_supporter(query)
        not_found = bool(query) and chosen is None
        in_audience = None
        if chosen is not None:
            in_audience = mailing.audience().filter(pk=chosen.pk).exists()
        count, warnings = self.audience_summary(mailing)
        rendered = error = None
        try:
            message = self._preview_message(mailing, chosen)
            rendered = {
                "subject": message.subject,
                "text": message.body,
                "from": message.from_email,
                "headers": message.extra_headers,
            }
        except PREVIEW_ERRORS as problem:
            error = _problem_text(problem)
        frame = reverse("admin:mailings_mailing_preview_frame", args=[mailing.pk])
        if chosen is not None:
            frame += "?" + urlencode({"supporter": chosen.pk})
        return TemplateResponse(
            request,
            "admin/mailings/mailing/preview.html",
            self._context(
                request,
                mailing,
                title=f"Preview: {mailing}",
                rendered=rendered,
                frame_url=frame,
                error=error,
                supporter=chosen,
                supporter_query=query,
                not_found=not_found,
                in_audience=in_audience,
                recipient_estimate=count,
                warnings=warnings,
                notes=emails.content_notes(mailing),
                **_checks_context(mailing),
                test_form=test_form or TestSendForm(initial={"supporter": query}),
            ),
        )

    def _preview_message(self, mailing, supporter):
        """Return the message `supporter` (or a sample) would get, with harmless links."""
        return emails.PreparedMailing(mailing).message(
            supporter or services.sample_supporter(), links_for=emails.PREVIEW_LINKS
        )

    def preview_frame_view(self, request, pk):
        """The email's HTML as sent, for the preview's desktop and phone frames."""
        mailing = self._mailing(request, pk)
        try:
            message = self._preview_message(mailing, _find_supporter(request.GET.get("supporter")))
        except PREVIEW_ERRORS as problem:
            return composer_views.frame_response(
                format_html("<p>It cannot be shown yet: {}</p>", _problem_text(problem))
            )
        return composer_views.frame_response(message.alternatives[0][0])

    def override_checks_view(self, request, pk):
        """A campaign manager allows sending despite the problems the check blocks on."""
        mailing = self._mailing(request, pk, send=True)
        try:
            services.mailing_override_checks(mailing=mailing, actor=request.user)
        except services.MailingRefused as error:
            messages.error(request, error.message)
        else:
            messages.warning(
                request,
                "Sending is allowed despite the problems listed. Your name is recorded with it.",
            )
        return self._back(mailing)

    def save_as_template_view(self, request, pk):
        """Save the newsletter's blocks, header and footer as a template to start from."""
        mailing = self._mailing(request, pk)
        if not request.user.has_perm("mailings.add_emailtemplate"):
            raise PermissionDenied
        name = (request.POST.get("name") or "").strip()[:100] or f"From “{mailing.name}”"[:100]
        template = composer_views.email_template_create_from_mailing(mailing=mailing, name=name)
        messages.success(
            request,
            format_html(
                "Saved as the template “{}”. Start a newsletter from it with "
                '<a href="{}">New newsletter from this template</a>.',
                template.name,
                reverse("admin:mailings_mailing_add") + f"?template={template.pk}",
            ),
        )
        return self._back(mailing)

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
                **_checks_context(mailing),
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
        "pause": (
            services.mailing_pause,
            "Paused. Messages already handed to the email service still go.",
        ),
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
            messages.success(
                request,
                f"{count:,} message(s) whose sending was interrupted will be sent again.",
            )
            return self._back(mailing)
        if action == "choose-winner":
            chosen = request.POST.get("variant", "")
            if not chosen.isdigit():
                raise PermissionDenied
            variant = get_object_or_404(Variant, pk=int(chosen), mailing=mailing)
            try:
                abtests.abtest_choose_winner(mailing=mailing, variant=variant, actor=request.user)
            except services.MailingRefused as error:
                messages.error(request, error.message)
            else:
                messages.success(request, f"Variant {variant.label} is being sent to the rest.")
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
                ab_test=abtests.summary(mailing),
                progress=reports.progress(mailing),
            ),
        )

    # -- the report's lists of people --

    def _people(self, request, pk, permission, data):
        """Return (mailing, who, link, q) from `data`, after checking `permission`."""
        mailing = self._mailing(request, pk)
        if not request.user.has_perm(PEOPLE_PERMISSION) or not request.user.has_perm(permission):
            raise PermissionDenied
        who = data.get("who", "opened")
        link = data.get("link", "") if who == "clicked" else ""
        return mailing, who, link, data.get("q", "")

    def _report(self, mailing):
        return HttpResponseRedirect(reverse("admin:mailings_mailing_report", args=[mailing.pk]))

    def people_view(self, request, pk):
        mailing, who, link, q = self._people(request, pk, PEOPLE_PERMISSION, request.GET)
        try:
            rows = report_people.deliveries(mailing, who, link=link, q=q)
        except ListRefused as error:
            messages.error(request, error.message)
            return self._report(mailing)
        page = Paginator(rows, PEOPLE_PER_PAGE).get_page(request.GET.get("p"))
        name = report_people.describe(mailing, who, link=link, q=q)
        return TemplateResponse(
            request,
            "admin/mailings/mailing/report_people.html",
            self._context(
                request,
                mailing,
                title=name,
                who=who,
                link=link,
                link_linkable=reports.WEB_LINK.match(link) is not None,
                q=q,
                query=urlencode({"who": who, "link": link, "q": q}),
                query_without_search=urlencode({"who": who, "link": link}),
                page=page,
                when_heading=report_people.LISTS[who].when,
                lists=[(key, kind.label) for key, kind in report_people.LISTS.items()],
            ),
        )

    def people_segment_view(self, request, pk):
        mailing, who, link, q = self._people(request, pk, SEGMENT_PERMISSION, request.POST)
        try:
            if not report_people.deliveries(mailing, who, link=link, q=q).exists():
                messages.error(request, "Nobody is in this list, so no segment was made.")
                return self._report(mailing)
            segment = report_people.segment_create_from_list(
                mailing=mailing, who=who, link=link, q=q, actor=request.user
            )
        except ListRefused as error:
            messages.error(request, error.message)
            return self._report(mailing)
        messages.success(
            request,
            f"Segment “{segment}” made, with {segment.size:,} supporter(s). Choose it in a "
            "mailing's audience to follow up with them.",
        )
        return HttpResponseRedirect(reverse("admin:crm_segment_change", args=[segment.pk]))

    def people_export_view(self, request, pk):
        mailing, who, link, q = self._people(request, pk, EXPORT_PERMISSION, request.POST)
        try:
            exported = report_people.list_export(
                mailing=mailing, who=who, link=link, q=q, actor=request.user
            )
        except ListRefused as error:
            messages.error(request, error.message)
            return self._report(mailing)
        response = HttpResponse(exported.content, content_type=exported.content_type)
        response["Content-Disposition"] = f'attachment; filename="{exported.file_name}"'
        return response


class EmailTemplateForm(forms.ModelForm):
    # Set by EmailTemplateAdmin.get_form from the user's permission.
    allow_html = False

    class Meta:
        model = EmailTemplate
        fields = (
            "name",
            "is_default",
            "logo",
            "logo_alt",
            "brand_colour",
            "button_colour",
            "postal_address",
            "footer_text",
            "background_colour",
            "text_colour",
            "blocks",
        )
        widgets = {
            field: forms.TextInput(attrs={"type": "color"})
            for field in ("brand_colour", "button_colour", "background_colour", "text_colour")
        } | {
            "postal_address": forms.Textarea(attrs={"rows": 3, "cols": 60}),
            "footer_text": forms.Textarea(attrs={"rows": 3, "cols": 60}),
        }
        labels = {"blocks": "Starting content"}

    def _get_validation_exclusions(self):
        # One default template (a constraint): choosing this one unticks the
        # old one when saved (EmailTemplateAdmin.save_model), so it is no error.
        return super()._get_validation_exclusions() | {"is_default"}

    def clean_blocks(self):
        previous = _as_saved(self.instance.blocks if self.instance.pk else ())
        try:
            blocks = composer_blocks.clean_blocks(
                self.cleaned_data.get("blocks"), allow_html=self.allow_html, previous=previous
            )
            emails.check_merge_fields(*composer_blocks.merge_texts(blocks))
        except composer_blocks.BlockError as error:
            raise forms.ValidationError(error.messages) from None
        except emails.MergeFieldError as error:
            raise forms.ValidationError(error.message) from None
        return blocks


@admin.register(EmailTemplate)
class EmailTemplateAdmin(admin.ModelAdmin):
    """The charity's header and footer, set once; newsletters start from a template."""

    form = EmailTemplateForm
    list_display = ("name", "is_default", "block_count", "start_newsletter")
    fieldsets = (
        (None, {"fields": ("name", "is_default")}),
        ("Header", {"fields": ("logo", "logo_alt", "brand_colour", "button_colour")}),
        (
            "Footer and page",
            {"fields": ("postal_address", "footer_text", "background_colour", "text_colour")},
        ),
        (
            "Starting content",
            {
                "fields": ("blocks",),
                "description": "The blocks a newsletter started from this template begins with.",
            },
        ),
    )

    @admin.display(description="blocks")
    def block_count(self, template):
        return len(template.blocks or [])

    @admin.display(description="")
    def start_newsletter(self, template):
        return format_html(
            '<a href="{}">New newsletter from this template</a>',
            reverse("admin:mailings_mailing_add") + f"?template={template.pk}",
        )

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        allow_html = request.user.has_perm(HTML_PERMISSION)
        if "blocks" in form.base_fields:
            form.base_fields["blocks"].widget = BlocksWidget(
                allow_html=allow_html, upload_url=reverse("admin:mailings_composer_upload")
            )
            form.base_fields["blocks"].help_text = ""
        # modelform_factory made this class for this request alone.
        form.allow_html = allow_html
        return form

    def save_model(self, request, obj, form, change):
        # One default at a time (a constraint holds it): choosing this one
        # unsets the other, in the admin's transaction.
        if obj.is_default:
            EmailTemplate.objects.filter(is_default=True).exclude(pk=obj.pk).update(
                is_default=False
            )
        super().save_model(request, obj, form, change)


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
