"""Segments in the staff admin: static lists and rule-based segments, with their members."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from crm import services
from crm.admin.sync import (  # also registers ImportBatchAdmin
    SegmentExportMixin,
)
from crm.models import (
    CampaignInterest,
    PartnerOrganisation,
    Segment,
    Supporter,
)
from crm.segments import (
    MAX_DAYS,
    RULE_KEYS,
    SegmentRuleError,
    mailings_using,
    validate_rules,
)


class SegmentForm(forms.ModelForm):
    """Edit a rule-based segment's saved definition through ordinary fields."""

    interests = forms.ModelMultipleChoiceField(
        CampaignInterest.objects.all(),
        required=False,
        to_field_name="slug",
        widget=forms.CheckboxSelectMultiple,
        help_text="Subscribed to any of these.",
    )
    partners = forms.ModelMultipleChoiceField(
        PartnerOrganisation.objects.all(),
        required=False,
        to_field_name="slug",
        widget=forms.CheckboxSelectMultiple,
        help_text="Came from any of these partners.",
    )
    countries = forms.CharField(
        required=False, help_text="ISO country codes separated by commas, e.g. GB, IE."
    )
    postcode_prefixes = forms.CharField(
        required=False, help_text="Postcode starts with any of these, e.g. SW1, E1."
    )
    tags = forms.CharField(required=False, help_text="Tag names separated by commas.")
    statuses = forms.MultipleChoiceField(
        choices=Supporter.Status.choices, required=False, widget=forms.CheckboxSelectMultiple
    )
    joined_after = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    joined_before = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    opened_within_days = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_DAYS,
        help_text=f"Opened any mailing in the last N days (1 to {MAX_DAYS:,}).",
    )
    clicked_within_days = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_DAYS,
        help_text=f"Clicked a link in any mailing in the last N days (1 to {MAX_DAYS:,}).",
    )

    class Meta:
        model = Segment
        fields = ("name", "description", "kind")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        rules = self.instance.rules or {}
        for key in RULE_KEYS:
            value = rules.get(key)
            if value is None:
                continue
            if key in ("countries", "postcode_prefixes", "tags"):
                value = ", ".join(value)
            self.initial[key] = value

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("kind") != Segment.Kind.RULES:
            self.rules = {}
            return cleaned
        rules = {}
        for key in RULE_KEYS:
            value = cleaned.get(key)
            if value in (None, "", []):
                continue
            if key in ("interests", "partners"):
                value = [obj.slug for obj in value]
            elif key in ("countries", "postcode_prefixes", "tags"):
                value = [part.strip() for part in value.split(",") if part.strip()]
            elif key in ("joined_after", "joined_before"):
                value = value.isoformat()
            elif key == "statuses":
                value = list(value)
            rules[key] = value
        try:
            self.rules = validate_rules(rules)
        except ValidationError as error:
            raise forms.ValidationError(error.messages) from None
        return cleaned

    def save(self, commit=True):
        self.instance.rules = self.rules
        return super().save(commit)


@admin.register(Segment)
class SegmentAdmin(SegmentExportMixin, admin.ModelAdmin):
    form = SegmentForm
    list_display = ("name", "kind", "description")
    list_filter = ("kind",)
    search_fields = ("name",)
    readonly_fields = ("live_count", "preview")
    fieldsets = (
        (None, {"fields": ("name", "description", "kind")}),
        (
            "Rules (rule-based segments)",
            {
                "fields": (
                    "interests",
                    "partners",
                    "countries",
                    "postcode_prefixes",
                    "tags",
                    "statuses",
                    ("joined_after", "joined_before"),
                    "opened_within_days",
                    "clicked_within_days",
                )
            },
        ),
        ("Members now", {"fields": ("live_count", "preview")}),
    )

    def save_model(self, request, obj, form, change):
        services.segment_save(segment=obj, actor=request.user)
        if change and set(form.changed_data) & {"kind", *RULE_KEYS}:
            in_use = mailings_using([obj.pk])
            if in_use:
                self.message_user(
                    request,
                    "The audience of mailings still to be sent changed with this segment: "
                    + "; ".join(in_use)
                    + ". Their pages say so.",
                    messages.WARNING,
                )

    # A segment that a mailing still to be sent uses is protected from deletion,
    # so the delete page and the bulk delete action name the mailings and refuse.
    def get_deleted_objects(self, objs, request):
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        protected = [*protected, *mailings_using([segment.pk for segment in objs])]
        return deleted, counts, perms_needed, protected

    def delete_model(self, request, obj):
        services.segments_delete(segments=[obj], actor=request.user)

    def delete_queryset(self, request, queryset):
        services.segments_delete(segments=queryset, actor=request.user)

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except services.SegmentInUse as error:  # a mailing took it up since the page was shown
            self.message_user(request, error.message, messages.ERROR)
            return redirect("admin:crm_segment_change", object_id)

    def changelist_view(self, request, extra_context=None):
        try:
            return super().changelist_view(request, extra_context)
        except services.SegmentInUse as error:  # likewise, for the bulk delete action
            self.message_user(request, error.message, messages.ERROR)
            return redirect("admin:crm_segment_changelist")

    def _members(self, segment):
        if segment.pk is None:
            return None
        try:
            return segment.supporters()
        except SegmentRuleError as error:
            return error

    @admin.display(description="live count")
    def live_count(self, segment):
        members = self._members(segment)
        if members is None:
            return "Save the segment to see who is in it."
        if isinstance(members, SegmentRuleError):
            return f"Cannot be evaluated: {members.message}"
        return f"{members.count():,} supporters"

    @admin.display(description="first members")
    def preview(self, segment):
        members = self._members(segment)
        if members is None or isinstance(members, SegmentRuleError):
            return "—"
        rows = members.order_by("-created_at", "-pk")[:10]
        if not rows:
            return "Nobody matches."
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "",
                '<li><a href="{}">{}</a></li>',
                ((reverse("admin:crm_supporter_change", args=[s.pk]), str(s)) for s in rows),
            ),
        )
