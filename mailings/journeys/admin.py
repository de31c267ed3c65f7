"""
The journeys admin: build a journey (trigger, topics, steps), start, pause, resume
or end it, change a live journey's steps as a new version, and read its report.
Every button calls a service in mailings.journeys.services.
"""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.forms.models import BaseInlineFormSet
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from mailings.journeys import report, services
from mailings.journeys.models import Enrolment, Journey, JourneyStep

CHANGE_PERMISSION = "journeys.change_journey"


class StepForm(forms.ModelForm):
    link_url = forms.URLField(label="link", required=False, max_length=2000, assume_scheme="https")

    class Meta:
        model = JourneyStep
        fields = (
            "position",
            "kind",
            "wait_days",
            "wait_weekday",
            "wait_hour",
            "condition",
            "link_url",
            "interest",
            "branch_to",
            "tag",
            "segment",
        )
        widgets = {
            "position": forms.NumberInput(attrs={"class": "vIntegerField rally-narrow"}),
            "wait_days": forms.NumberInput(attrs={"class": "vIntegerField rally-narrow"}),
            "wait_hour": forms.NumberInput(attrs={"class": "vIntegerField rally-narrow"}),
            "branch_to": forms.NumberInput(attrs={"class": "vIntegerField rally-narrow"}),
        }

    def clean_wait_hour(self):
        hour = self.cleaned_data.get("wait_hour")
        if hour is not None and hour > 23:
            raise forms.ValidationError("An hour is 0 to 23.")
        return hour


class StepFormSet(BaseInlineFormSet):
    """The steps of the version staff are editing (the live one, or an unpublished draft)."""

    def _version(self):
        return self.instance.draft_version if self.instance.pk else 1

    def get_queryset(self):
        return super().get_queryset().filter(version=self._version())

    def save_new(self, form, commit=True):
        form.instance.version = self._version()
        return super().save_new(form, commit)

    def clean(self):
        super().clean()
        seen = set()
        for form in self.forms:
            if not form.cleaned_data or form.cleaned_data.get("DELETE"):
                continue
            position = form.cleaned_data.get("position")
            if position in seen:
                raise forms.ValidationError(f"Two steps are numbered {position}: renumber one.")
            seen.add(position)


class StepInline(admin.TabularInline):
    model = JourneyStep
    form = StepForm
    formset = StepFormSet
    extra = 0
    fields = (
        "position",
        "kind",
        "email",
        "wait_days",
        "wait_weekday",
        "wait_hour",
        "condition",
        "link_url",
        "interest",
        "branch_to",
        "tag",
        "segment",
        "there_now",
    )
    readonly_fields = ("email", "there_now", "what_happens")
    autocomplete_fields = ()
    ordering = ("position",)
    verbose_name = "step"
    verbose_name_plural = "Steps"

    @admin.display(description="email")
    def email(self, step):
        if not step.pk or step.kind != JourneyStep.Kind.EMAIL:
            return "Save, then write it" if step.kind == JourneyStep.Kind.EMAIL else ""
        if not step.mailing_id:
            return "Save, then write it"
        url = reverse("admin:mailings_mailing_change", args=[step.mailing_id])
        label = step.mailing.subject or "Write the email"
        return format_html('<a href="{}">{}</a>', url, label)

    def get_fields(self, request, obj=None):
        if self._editable(obj):
            return super().get_fields(request, obj)
        # Steps that cannot change here read as one sentence each, not a row of blanks.
        return ("position", "what_happens", "there_now")

    @admin.display(description="what happens")
    def what_happens(self, step):
        text = step.describe()
        if step.kind == JourneyStep.Kind.EMAIL and step.mailing_id:
            url = reverse("admin:mailings_mailing_change", args=[step.mailing_id])
            return format_html('<a href="{}">{}</a>', url, text)
        return text

    @admin.display(description="there now")
    def there_now(self, step):
        if not step.pk:
            return ""
        count = Enrolment.objects.active().filter(step=step).count()
        return f"{count:,}"

    def _editable(self, obj):
        if obj is None or obj.status == Journey.Status.DRAFT:
            return True
        return obj.status != Journey.Status.ENDED and obj.draft_version > obj.version

    def has_add_permission(self, request, obj=None):
        return self._editable(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request, obj=None):
        return self._editable(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self._editable(obj) and super().has_delete_permission(request, obj)


@admin.register(Journey)
class JourneyAdmin(admin.ModelAdmin):
    list_display = ("name", "who_enters", "status_badge", "in_it", "entered", "finished", "left")
    list_filter = ("status", "trigger")
    search_fields = ("name",)
    inlines = (StepInline,)
    filter_horizontal = ("interests",)
    fieldsets = (
        (None, {"fields": ("name", "description")}),
        (
            "Who enters",
            {
                "fields": (
                    "trigger",
                    "trigger_interest",
                    "trigger_partner",
                    "trigger_segment",
                    "trigger_days",
                    "entry",
                    "reentry_days",
                ),
                "description": (
                    "Supporters enter when this happens after the journey goes live, if they "
                    "are subscribed to one of its interests. Everyone in a segment enters when "
                    "the journey goes live."
                ),
            },
        ),
        (
            "Topics",
            {
                "fields": ("interests",),
                "description": (
                    "Like a newsletter's: journey emails go only to subscribers of these, and "
                    "whoever unsubscribes, bounces or is suppressed leaves the journey at once."
                ),
            },
        ),
    )

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                n_entered=Count("enrolments"),
                n_active=Count("enrolments", filter=Q(enrolments__state=Enrolment.State.ACTIVE)),
                n_done=Count("enrolments", filter=Q(enrolments__state=Enrolment.State.DONE)),
                n_left=Count("enrolments", filter=Q(enrolments__state=Enrolment.State.LEFT)),
            )
        )

    @admin.display(description="who enters", ordering="trigger")
    def who_enters(self, journey):
        target = (
            journey.trigger_interest
            or journey.trigger_partner
            or journey.trigger_segment
            or (f"{journey.trigger_days} days" if journey.trigger_days else "")
        )
        text = journey.get_trigger_display()
        return f"{text}: {target}" if target else text

    @admin.display(description="status", ordering="status")
    def status_badge(self, journey):
        return format_html(
            '<span class="rally-badge rally-badge-{}">{}</span>',
            journey.status,
            journey.get_status_display(),
        )

    @admin.display(description="in it now", ordering="n_active")
    def in_it(self, journey):
        return f"{journey.n_active:,}"

    @admin.display(description="entered", ordering="n_entered")
    def entered(self, journey):
        return f"{journey.n_entered:,}"

    @admin.display(description="finished", ordering="n_done")
    def finished(self, journey):
        return f"{journey.n_done:,}"

    @admin.display(description="left", ordering="n_left")
    def left(self, journey):
        return f"{journey.n_left:,}"

    def has_delete_permission(self, request, obj=None):
        # Only a draft, which nobody ever entered: a journey that ran keeps its history.
        if obj is not None and obj.status != Journey.Status.DRAFT:
            return False
        return super().has_delete_permission(request, obj)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        journey = form.instance
        for step in journey.steps.filter(kind=JourneyStep.Kind.EMAIL, mailing__isnull=True):
            services.journey_email_create(step=step, actor=request.user)
        services.journey_sync_emails(journey=journey)

    # -- pages and buttons --

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<int:pk>/report/", view(self.report_view), name="journeys_journey_report"),
            path(
                "<int:pk>/do/<str:action>/",
                view(require_POST(self.action_view)),
                name="journeys_journey_action",
            ),
            path(
                "<int:pk>/move/", view(require_POST(self.move_view)), name="journeys_journey_move"
            ),
            *super().get_urls(),
        ]

    ACTIONS = {
        "start": (services.journey_start, "“{}” is live: whoever joins from now on enters."),
        "pause": (services.journey_pause, "“{}” is paused: everyone in it holds where they are."),
        "resume": (services.journey_resume, "“{}” carries on."),
        "end": (services.journey_end, "“{}” has ended: everyone in it has left."),
        "edit": (
            services.journey_version_new,
            "You are changing the steps of “{}”. Those already in it carry on as before "
            "until you publish, and after, unless you move them.",
        ),
        "publish": (
            services.journey_version_publish,
            "New entrants of “{}” follow the changed steps. Those already in carry on along "
            "the steps they entered; move them on the report page if you wish.",
        ),
        "discard": (services.journey_version_discard, "The changes to “{}” were thrown away."),
        "move-all": (
            services.enrolments_move_to_live_version,
            "Everyone in “{}” now follows the live steps, at the same step number.",
        ),
    }

    def action_view(self, request, pk, action):
        journey = get_object_or_404(Journey, pk=pk)
        if not request.user.has_perm(CHANGE_PERMISSION) or action not in self.ACTIONS:
            raise PermissionDenied
        service, done = self.ACTIONS[action]
        try:
            service(journey=journey, actor=request.user)
        except services.JourneyRefused as error:
            messages.error(request, error.message)
        else:
            messages.success(request, done.format(journey))
        back = request.POST.get("next") or ""
        if back == "report":
            return HttpResponseRedirect(reverse("admin:journeys_journey_report", args=[pk]))
        return HttpResponseRedirect(reverse("admin:journeys_journey_change", args=[pk]))

    def move_view(self, request, pk):
        journey = get_object_or_404(Journey, pk=pk)
        if not request.user.has_perm(CHANGE_PERMISSION):
            raise PermissionDenied
        steps = JourneyStep.objects.filter(journey=journey)
        from_step = steps.filter(pk=request.POST.get("from_step")).first()
        to_step = steps.filter(pk=request.POST.get("to_step")).first()
        if from_step is None or to_step is None:
            messages.error(request, "Choose the step to move people from and the step to move to.")
        else:
            try:
                moved = services.enrolments_move(
                    journey=journey, from_step=from_step, to_step=to_step, actor=request.user
                )
            except services.JourneyRefused as error:
                messages.error(request, error.message)
            else:
                messages.success(
                    request,
                    f"{moved:,} {'person' if moved == 1 else 'people'} moved to step "
                    f"{to_step.position} (version {to_step.version}).",
                )
        return HttpResponseRedirect(reverse("admin:journeys_journey_report", args=[pk]))

    def report_view(self, request, pk):
        journey = get_object_or_404(Journey, pk=pk)
        if not self.has_view_permission(request, journey):
            raise PermissionDenied
        figures = report.report(journey)
        movable = JourneyStep.objects.filter(
            journey=journey, version__lte=journey.version
        ).order_by("-version", "position")
        return TemplateResponse(
            request,
            "admin/journeys/journey/report.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "journey": journey,
                "title": f"Report: {journey}",
                "report": figures,
                "movable": movable,
                "can_change": request.user.has_perm(CHANGE_PERMISSION),
            },
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        journey = Journey.objects.filter(pk=object_id).first()
        extra = extra_context or {}
        if journey is not None:
            extra.update(
                journey=journey,
                problems=services.journey_problems(journey=journey, version=journey.draft_version),
                has_draft=journey.draft_version > journey.version,
                can_change=request.user.has_perm(CHANGE_PERMISSION),
            )
        return super().change_view(request, object_id, form_url, extra_context=extra)
