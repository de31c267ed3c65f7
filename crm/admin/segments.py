"""Segments in the staff admin: static lists and rule-based segments, with their members.

The list shows each segment's size as last counted (Segment.size, kept by
crm.services.segment_size_refresh on save, on member changes and by Celery
beat), never counting per view, and the mailings that use it. A segment's page
shows its rules (rule-based) or lets staff remove members (static), and the
first members with enough to tell two people of the same name apart.
"""

import contextlib
import datetime
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.contrib.admin.widgets import AdminDateWidget, FilteredSelectMultiple
from django.core.exceptions import ValidationError
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.text import Truncator
from django.utils.timesince import timesince
from django_countries import countries

from crm import services
from crm.admin.sync import (  # also registers ImportBatchAdmin
    SegmentExportMixin,
)
from crm.models import (
    CampaignInterest,
    PartnerOrganisation,
    Segment,
    Supporter,
    Tag,
)
from crm.segments import (
    MAX_DAYS,
    RULE_KEYS,
    SegmentRuleError,
    describe_rules,
    mailings_using,
    segments_used_by,
    validate_rules,
)

# Dates are written the UK way; ISO dates (2024-12-31) are understood too.
DATE_INPUT_FORMATS = ["%d/%m/%Y", "%d/%m/%y", "%Y-%m-%d"]
PREVIEW_ROWS = 10
USERS_SHOWN = 3  # mailings named per segment in the list; the rest are counted


CHOICES = {"class": "segment-choices"}  # a list of ticks or options, each on its own line
KIND_CHOICES = [
    (Segment.Kind.RULES, "Rule-based: the supporters who match rules you set, kept up to date"),
    (Segment.Kind.STATIC, "Static list: people you choose by hand from the supporter list"),
]


def _date_field(help_text):
    return forms.DateField(
        required=False,
        input_formats=DATE_INPUT_FORMATS,
        widget=AdminDateWidget(format="%d/%m/%Y", attrs={"placeholder": "dd/mm/yyyy"}),
        error_messages={"invalid": "Enter a date as dd/mm/yyyy, e.g. 31/01/2025."},
        help_text=help_text,
    )


class ChooseFromLists(FilteredSelectMultiple):
    """The admin's two-list chooser, wrapped as the admin wraps related fields' widgets.

    Its script puts the chooser first in the widget's parent: unwrapped, that
    is the form row, and the chooser would sit before its own label.
    """

    def render(self, *args, **kwargs):
        return format_html(
            '<div class="related-widget-wrapper">{}</div>', super().render(*args, **kwargs)
        )


class SegmentForm(forms.ModelForm):
    """Edit a segment: its kind, and a rule-based segment's definition through ordinary fields.

    The rule fields are ignored for static segments, whatever is posted.
    """

    interests = forms.ModelMultipleChoiceField(
        CampaignInterest.objects.all(),
        required=False,
        to_field_name="slug",
        widget=forms.CheckboxSelectMultiple(attrs=CHOICES),
        help_text="Subscribed to any of these.",
    )
    partners = forms.ModelMultipleChoiceField(
        PartnerOrganisation.objects.all(),
        required=False,
        to_field_name="slug",
        widget=forms.CheckboxSelectMultiple(attrs=CHOICES),
        help_text="Came from any of these partners.",
    )
    countries = forms.MultipleChoiceField(
        choices=lambda: list(countries),
        required=False,
        widget=ChooseFromLists("countries", is_stacked=False),
        help_text="Lives in any of these countries.",
    )
    postcode_prefixes = forms.CharField(
        required=False, help_text="Postcode starts with any of these, e.g. SW1, E1."
    )
    tags = forms.MultipleChoiceField(
        required=False,
        widget=ChooseFromLists("tags", is_stacked=False),
        help_text="Tagged with any of these.",
    )
    statuses = forms.MultipleChoiceField(
        choices=Supporter.Status.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple(attrs=CHOICES),
    )
    joined_after = _date_field("On or after this day, e.g. 01/01/2024.")
    joined_before = _date_field("On or before this day.")
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
    quiet_for_days = forms.IntegerField(
        label="Quiet for days",
        required=False,
        min_value=1,
        max_value=MAX_DAYS,
        help_text=(
            "Joined more than N days ago and neither opened nor clicked any mailing in the "
            "last N days: 365 finds those to ask whether they still want to hear from you."
        ),
    )
    # Ticked in the members table of a static segment's page (SegmentAdmin.member_table_to_remove).
    remove_members = forms.ModelMultipleChoiceField(
        Supporter.objects.all(), required=False, widget=forms.MultipleHiddenInput
    )

    class Meta:
        model = Segment
        fields = ("name", "description", "kind")
        widgets = {"kind": forms.RadioSelect(attrs=CHOICES)}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "kind" in self.fields:  # the add page: the kind is chosen once, first
            self.fields["kind"].choices = KIND_CHOICES
            self.fields["kind"].help_text = "Chosen once: it cannot be changed later."
        rules = self.instance.rules or {}
        # Tags are chosen from the tags that exist; a tag named in the rules
        # that has since been deleted stays a choice, so saving keeps it.
        names = list(Tag.objects.values_list("name", flat=True))
        gone = [name for name in rules.get("tags") or [] if name not in names]
        self.fields["tags"].choices = [(name, name) for name in names] + [
            (name, f"{name} (no longer a tag)") for name in gone
        ]
        for key in RULE_KEYS:
            value = rules.get(key)
            if value is None:
                continue
            if key == "postcode_prefixes":
                value = ", ".join(value)
            elif key in ("joined_after", "joined_before"):
                # Stored as ISO text; a date, so the field shows it as dd/mm/yyyy.
                with contextlib.suppress(TypeError, ValueError):
                    value = datetime.date.fromisoformat(value)
            self.initial[key] = value

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("kind") if "kind" in self.fields else self.instance.kind
        if kind != Segment.Kind.RULES:
            self.rules = {}
            return cleaned
        rules = {}
        for key in RULE_KEYS:
            value = cleaned.get(key)
            if value in (None, "", []):
                continue
            if key in ("interests", "partners"):
                value = [obj.slug for obj in value]
            elif key == "postcode_prefixes":
                value = [part.strip() for part in value.split(",") if part.strip()]
            elif key in ("joined_after", "joined_before"):
                value = value.isoformat()
            elif key in ("countries", "tags", "statuses"):
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


class SegmentChangeList(ChangeList):
    """The segment list, with what uses each segment on the page found in a few queries."""

    def get_results(self, request):
        super().get_results(request)
        used = segments_used_by([segment.pk for segment in self.result_list])
        for segment in self.result_list:
            segment.listed_users = used.get(segment.pk, [])


RULE_FIELDS = (
    "interests",
    "partners",
    "countries",
    "postcode_prefixes",
    "tags",
    "statuses",
    ("joined_after", "joined_before"),
    "opened_within_days",
    "clicked_within_days",
    "quiet_for_days",
)
RULES_HELP = (
    "Members are the supporters who match every rule filled in; within a rule, any of "
    "the values chosen. Leave a rule empty to ignore it."
)


@admin.register(Segment)
class SegmentAdmin(SegmentExportMixin, admin.ModelAdmin):
    form = SegmentForm
    list_display = ("name", "kind", "size_column", "used_by_column", "short_description")
    list_filter = ("kind",)
    search_fields = ("name",)
    readonly_fields = (
        "used_by",
        "live_count",
        "member_table",
        "member_table_to_remove",
        "rules_summary",
    )
    fieldsets = ((None, {"fields": ("kind", "name", "description")}),)

    class Media:
        js = ("crm/segments.js",)
        css = {"all": ("crm/segments.css",)}

    def get_changelist(self, request, **kwargs):
        return SegmentChangeList

    def get_readonly_fields(self, request, obj=None):
        readonly = super().get_readonly_fields(request, obj)
        # The kind is chosen when the segment is made: a static list turned
        # rule-based would match everyone until rules were written.
        return (*readonly, "kind") if obj is not None else readonly

    def get_fieldsets(self, request, obj=None):
        details, *others = super().get_fieldsets(request, obj)
        if obj is not None:
            details = (None, {"fields": ("name", "description", "kind", "used_by")})
        editable = (
            self.has_change_permission(request, obj)
            if obj is not None
            else self.has_add_permission(request)
        )
        mine = []
        if obj is None or obj.kind == Segment.Kind.RULES:
            # Hidden by crm/segments.js on the add page while "Static list" is chosen.
            rules = {"fields": ("rules_summary",), "classes": ("segment-rules",)}
            if editable:
                rules.update(fields=RULE_FIELDS, description=RULES_HELP)
            mine.append(("Rules", rules))
        if obj is not None:
            members = (
                "member_table_to_remove"
                if editable and obj.kind == Segment.Kind.STATIC
                else "member_table"
            )
            mine.append(("Members now", {"fields": ("live_count", members)}))
        return [details, *mine, *others]

    def save_model(self, request, obj, form, change):
        services.segment_save(segment=obj, actor=request.user)
        leaving = form.cleaned_data.get("remove_members")
        if obj.kind == Segment.Kind.STATIC and leaving:
            removed = services.segment_remove_members(
                segment=obj, supporters=leaving, actor=request.user
            )
            self.message_user(request, f"Removed {removed:,} supporter(s) from “{obj}”.")
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

    # The list ---------------------------------------------------------------------------

    @admin.display(description="size", ordering="size")
    def size_column(self, segment):
        counted = segment.size_counted_at
        if counted is None:
            return "not counted yet"
        age = timesince(counted, depth=1)
        age = "just now" if age.startswith("0") else f"{age} ago"
        when = timezone.localtime(counted).strftime("%d/%m/%Y %H:%M")
        size = "rules need fixing" if segment.size is None else f"{segment.size:,}"
        return format_html(
            '<span title="Counted {}">{} <span class="segment-size-age">· {}</span></span>',
            when,
            size,
            age,
        )

    @admin.display(description="used by")
    def used_by_column(self, segment):
        return self._users(segment.listed_users, shown=USERS_SHOWN)

    def _users(self, users, *, shown=None):
        if not users:
            return "—"
        links = format_html_join(
            ", ",
            '<a href="{}">{}</a> ({})',
            ((user.url, user.name, user.note) for user in users[:shown]),
        )
        if shown is not None and len(users) > shown:
            return format_html("{} and {} more", links, len(users) - shown)
        return links

    @admin.display(description="description")
    def short_description(self, segment):
        return Truncator(segment.description).chars(90) or "—"

    # A segment's page ---------------------------------------------------------------------

    def _members(self, segment):
        if segment.pk is None:
            return None
        try:
            return segment.supporters()
        except SegmentRuleError as error:
            return error

    @admin.display(description="used by")
    def used_by(self, segment):
        """Every mailing that sends to or leaves out this segment, newest first."""
        return self._users(segments_used_by([segment.pk]).get(segment.pk, []))

    @admin.display(description="rules")
    def rules_summary(self, segment):
        try:
            lines = describe_rules(segment.rules)
        except SegmentRuleError as error:
            return f"Cannot be evaluated: {error.message}"
        return format_html(
            '<ul class="segment-rules-summary">{}</ul>',
            format_html_join("", "<li>{}</li>", ((line,) for line in lines)),
        )

    @admin.display(description="size")
    def live_count(self, segment):
        members = self._members(segment)
        if members is None:
            return "Save the segment to see who is in it."
        if isinstance(members, SegmentRuleError):
            return f"Cannot be evaluated: {members.message}"
        return f"{members.count():,} supporters"

    @admin.display(description="members")
    def member_table(self, segment):
        return self._members_table(segment, removable=False)

    @admin.display(description="members")
    def member_table_to_remove(self, segment):
        return self._members_table(segment, removable=True)

    def _members_table(self, segment, *, removable):
        """The newest members: name, email, postcode, status and joined date, each linked."""
        members = self._members(segment)
        if members is None or isinstance(members, SegmentRuleError):
            return "—"
        rows = list(members.order_by("-created_at", "-pk")[:PREVIEW_ROWS])
        supporters = reverse("admin:crm_supporter_changelist")
        add = ""
        if removable:
            add = format_html(
                '<p class="segment-add"><a class="button" href="{}">Add supporters…</a> '
                "Find them in the supporter list (search, or filter by interest, partner or tag), "
                "tick them and choose “Add to a static segment…” from the actions.</p>",
                supporters,
            )
        if not rows:
            return format_html(
                "{}<p>{}</p>", add, "No members yet." if removable else "Nobody matches."
            )
        total = members.count()
        body = format_html_join(
            "",
            '<tr>{}<td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    format_html(
                        '<td class="action-checkbox"><input type="checkbox" name="remove_members" '
                        'value="{}" aria-label="Remove {}"></td>',
                        s.pk,
                        s.full_name or s.email,
                    )
                    if removable
                    else "",
                    reverse("admin:crm_supporter_change", args=[s.pk]),
                    s.full_name or "(no name)",
                    s.email,
                    s.postcode or "—",
                    s.get_status_display(),
                    timezone.localtime(s.created_at).strftime("%d/%m/%Y"),
                )
                for s in rows
            ),
        )
        heading = format_html(
            '<tr>{}<th scope="col">Name</th><th scope="col">Email</th><th scope="col">Postcode</th>'
            '<th scope="col">Status</th><th scope="col">Joined</th></tr>',
            mark_safe('<th scope="col">Remove</th>') if removable else "",
        )
        caption = (
            f"The newest {len(rows)} of {total:,}, by joining date"
            if total > len(rows)
            else "Newest first, by joining date"
        )
        see_all = format_html(
            '<a href="{}?{}">See all {} in the supporter list</a>',
            supporters,
            urlencode({"segment": segment.pk}),
            f"{total:,}",
        )
        remove = ""
        if removable:
            remove = mark_safe(
                '<input type="submit" name="_continue" value="Remove ticked supporters">'
            )
        return format_html(
            '{}<table class="segment-members"><caption>{}</caption><thead>{}</thead>'
            "<tbody>{}</tbody></table>"
            '<p class="segment-members-more">{} {}</p>',
            add,
            caption,
            heading,
            body,
            remove,
            see_all,
        )
