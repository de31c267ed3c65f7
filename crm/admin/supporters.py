"""Supporters in the staff admin: the list, its filters and bulk actions, a supporter's page.

The list fits a 1280-pixel screen, one line per supporter, each long value
cut short with the whole of it on hover (crm/static/crm/supporters.css). A
supporter's page opens with who they are and how engaged, then their
timeline (crm.timeline), then the form.
"""

import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch
from django.db.models.functions import Lower
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django_countries import countries
from simple_history.admin import SimpleHistoryAdmin

from crm import services, timeline
from crm.admin.common import EstimatingPaginator
from crm.admin.sync import (  # also registers ImportBatchAdmin
    SupporterImportExportMixin,
)
from crm.models import (
    CampaignInterest,
    Segment,
    Subscription,
    Supporter,
    Tag,
)
from crm.segments import (
    SegmentRuleError,
)

TIMELINE_PARAM = "timeline_before"

# The list's short words for long labels (the whole label shows on hover).
STATUS_SHORT = {Supporter.Status.UNSUBSCRIBED: "Unsubscribed"}
SOURCE_SHORT = {
    Supporter.Source.SIGNUP_FORM: "Sign-up",
    Supporter.Source.PARTNER_IMPORT: "Import",
    Supporter.Source.STAFF: "Staff",
}


def _cell(text, title=None):
    return format_html('<span title="{}">{}</span>', title or text, text)


class InterestFilter(admin.SimpleListFilter):
    title = "subscribed to"
    parameter_name = "interest"

    def lookups(self, request, model_admin):
        return [(i.slug, i.name) for i in CampaignInterest.objects.all()]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        interest = CampaignInterest.objects.filter(slug=self.value()).first()
        return queryset.interested_in(interest) if interest else queryset.none()


class CountryFilter(admin.SimpleListFilter):
    title = "country"
    parameter_name = "country"

    def lookups(self, request, model_admin):
        # The distinct countries in a large table change slowly; ask at most
        # every ten minutes rather than on every page view.
        codes = cache.get_or_set(
            "crm.admin.countries",
            lambda: sorted(
                Supporter.objects.order_by().values_list("country", flat=True).distinct()
            ),
            600,
        )
        return [(code, countries.name(code) or code) for code in codes]

    def queryset(self, request, queryset):
        return queryset.filter(country=self.value()) if self.value() else queryset


class TagFilter(admin.SimpleListFilter):
    title = "tag"
    parameter_name = "tag"

    def lookups(self, request, model_admin):
        return [(tag.name, tag.name) for tag in Tag.objects.all()]

    def queryset(self, request, queryset):
        return queryset.tagged(self.value()) if self.value() else queryset


class SegmentFilter(admin.SimpleListFilter):
    title = "segment"
    parameter_name = "segment"

    def lookups(self, request, model_admin):
        return [(str(s.pk), s.name) for s in Segment.objects.all()]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        segment = Segment.objects.filter(pk=self.value()).first()
        if segment is None:
            return queryset.none()
        try:
            return queryset & segment.supporters()
        except SegmentRuleError as error:
            messages.error(request, f"Segment “{segment}” cannot be evaluated: {error.message}")
            return queryset.none()


# Inlines -----------------------------------------------------------------------


class SubscriptionInline(admin.TabularInline):
    model = Subscription
    extra = 0
    fields = ("interest", "status", "subscribed_at", "unsubscribed_at")
    readonly_fields = fields
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        # Subscriptions change through consent (actions below), never by editing rows.
        return False


# Forms for bulk actions -----------------------------------------------------------


class InterestActionForm(forms.Form):
    interest = forms.ModelChoiceField(queryset=CampaignInterest.objects.all())


class SegmentActionForm(forms.Form):
    segment = forms.ModelChoiceField(
        queryset=Segment.objects.filter(kind=Segment.Kind.STATIC),
        help_text="Only static segments have members added by hand.",
    )


@admin.register(Supporter)
class SupporterAdmin(SupporterImportExportMixin, SimpleHistoryAdmin):
    class Media:
        js = ["crm/admin.js"]  # asks before the revoke button acts (data-confirm)
        css = {"all": ["crm/supporters.css"]}

    list_display = (
        "email_column",
        "name_column",
        "postcode_column",
        "status_column",
        "interests_column",
        "source_column",
        "partner_column",
        "created_column",
    )
    list_filter = (
        "status",
        InterestFilter,
        "partner",
        CountryFilter,
        TagFilter,
        SegmentFilter,
        "source",
    )
    search_fields = ("email", "last_name", "first_name", "postcode")
    search_help_text = (
        "A full email address finds that supporter; otherwise names, postcodes and "
        "addresses starting with the text."
    )
    list_select_related = ("partner",)
    change_list_template = "admin/crm/supporter/change_list.html"
    list_per_page = 50
    paginator = EstimatingPaginator
    show_full_result_count = False
    date_hierarchy = None
    readonly_fields = ("status", "created_at", "updated_at", "gdpr_links")
    autocomplete_fields = ()
    filter_horizontal = ("tags",)
    # Consent records are told, with their wording, in the page's timeline.
    inlines = (SubscriptionInline,)
    fieldsets = (
        (None, {"fields": ("email", ("first_name", "last_name"), "postcode", "country")}),
        ("Contact", {"fields": ("phone", "organisation")}),
        ("Origin", {"fields": ("source", "partner", "created_at", "updated_at")}),
        ("Status", {"fields": ("status", "tags", "notes")}),
        ("Personal data", {"fields": ("gdpr_links",)}),
    )
    actions = (
        "subscribe_action",
        "unsubscribe_action",
        "add_to_segment_action",
        "remove_from_segment_action",
    )

    def get_queryset(self, request):
        subscribed = Subscription.objects.filter(
            status=Subscription.Status.SUBSCRIBED
        ).select_related("interest")
        return (
            super()
            .get_queryset(request)
            .prefetch_related(Prefetch("subscriptions", subscribed, to_attr="current_subs"))
        )

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        if "@" in term:
            # A whole address: one indexed lookup on the normalised email.
            return queryset.with_email(term), False
        lowered = term.lower()
        matches = (
            queryset.alias(email_key=Lower("email")).filter(email_key__startswith=lowered)
            | queryset.alias(last_key=Lower("last_name")).filter(last_key__startswith=lowered)
            | queryset.alias(first_key=Lower("first_name")).filter(first_key__startswith=lowered)
            | queryset.filter(postcode__startswith=term.upper())
        )
        return matches, False

    # The list's columns: each value in a span whose title holds all of it, as
    # the stylesheet cuts long values short to keep one line per supporter.

    @admin.display(description="email", ordering=Lower("email"))
    def email_column(self, supporter):
        return _cell(supporter.email)

    @admin.display(description="name", ordering="last_name")
    def name_column(self, supporter):
        return _cell(supporter.full_name or "—")

    @admin.display(description="postcode", ordering="postcode")
    def postcode_column(self, supporter):
        home = Supporter._meta.get_field("country").default
        if supporter.country and supporter.country != home:
            text = f"{supporter.postcode} {supporter.country.code}".strip()
            return _cell(text, f"{supporter.postcode} ({supporter.country.name})".strip())
        return _cell(supporter.postcode or "—")

    @admin.display(description="status", ordering="status")
    def status_column(self, supporter):
        return format_html(
            '<span class="supporter-status status-{}" title="{}">{}</span>',
            supporter.status,
            supporter.get_status_display(),
            STATUS_SHORT.get(supporter.status, supporter.get_status_display()),
        )

    @admin.display(description="subscribed to")
    def interests_column(self, supporter):
        subs = getattr(supporter, "current_subs", None)
        if subs is None:
            subs = supporter.subscriptions.filter(status=Subscription.Status.SUBSCRIBED)
        return _cell(", ".join(sub.interest.name for sub in subs) or "—")

    @admin.display(description="source", ordering="source")
    def source_column(self, supporter):
        label = supporter.get_source_display()
        return _cell(SOURCE_SHORT.get(supporter.source, label), label)

    @admin.display(description="partner", ordering="partner__name")
    def partner_column(self, supporter):
        return _cell(supporter.partner.name if supporter.partner_id else "—")

    @admin.display(description="joined", ordering="created_at")
    def created_column(self, supporter):
        joined = supporter.created_at
        return _cell(timeline.when_text(joined, time=False), timeline.when_text(joined))

    def changelist_view(self, request, extra_context=None):
        # The list needs the window's whole width: the app list beside it stays
        # one click away (Home), as on the admin's own index.
        extra_context = {
            "title": "Supporters",
            "is_nav_sidebar_enabled": False,
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context)

    # A supporter's page --------------------------------------------------------

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if change and obj is not None:
            context.update(self._supporter_page(request, obj))
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _supporter_page(self, request, supporter):
        """Return the head of the page and the timeline page the link asked for."""
        before, unreadable = None, False
        if request.GET.get(TIMELINE_PARAM):
            try:
                before = timeline.moment(request.GET[TIMELINE_PARAM])
            except (ValueError, OverflowError):
                unreadable = True
        page = timeline.timeline_page(supporter, before=before)
        query = request.GET.copy()
        query.pop(TIMELINE_PARAM, None)
        newest_url = f"?{query.urlencode()}#timeline" if before is not None else ""
        older_url = ""
        if page.older is not None:
            query[TIMELINE_PARAM] = page.older
            older_url = f"?{query.urlencode()}#timeline"
        consent_url = ""
        if request.user.has_perm("crm.view_consentrecord"):
            consent_url = (
                reverse("admin:crm_consentrecord_changelist")
                + f"?supporter__id__exact={supporter.pk}"
            )
        return {
            "supporter_summary": timeline.summary(supporter),
            "timeline": page,
            "timeline_newest_url": newest_url,
            "timeline_older_url": older_url,
            "timeline_unreadable": unreadable,
            "consent_records_url": consent_url,
        }

    def has_delete_permission(self, request, obj=None):
        # Deleting leaves no suppression entry, so the address could come back
        # by an import; GDPR requests are erasures (erase_view). Only superusers
        # delete, after the warning on the confirmation page.
        return request.user.is_active and request.user.is_superuser

    @admin.display(description="GDPR")
    def gdpr_links(self, supporter):
        if supporter.pk is None:
            return "—"
        export = reverse("admin:crm_supporter_export_data", args=[supporter.pk])
        erase = reverse("admin:crm_supporter_erase", args=[supporter.pk])
        revoke = reverse("admin:crm_supporter_revoke_links", args=[supporter.pk])
        # The revoke button sits inside the change form, so it posts that form
        # (and its CSRF token) to the revoke view instead of nesting a form.
        return format_html(
            '<a class="button" href="{}">Export everything we hold (JSON)</a> '
            '<a class="button" href="{}">Erase this supporter…</a> '
            '<button type="submit" class="button" formaction="{}" formmethod="post" '
            'formnovalidate data-confirm="Every preference and unsubscribe link this '
            'supporter was sent will stop working. Continue?">'
            "Revoke this supporter's email links</button>",
            export,
            erase,
            revoke,
        )

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and obj.status == Supporter.Status.ERASED:
            fields += ["email", "first_name", "last_name", "postcode", "phone", "organisation"]
        return fields

    def get_urls(self):
        return [
            path(
                "<int:pk>/export-data/",
                self.admin_site.admin_view(self.export_data_view),
                name="crm_supporter_export_data",
            ),
            path(
                "<int:pk>/erase/",
                self.admin_site.admin_view(self.erase_view),
                name="crm_supporter_erase",
            ),
            path(
                "<int:pk>/revoke-links/",
                self.admin_site.admin_view(self.revoke_links_view),
                name="crm_supporter_revoke_links",
            ),
            *super().get_urls(),
        ]

    def history_form_view(self, request, object_id, version_id, extra_context=None):
        # django-simple-history shows an old version to anyone who may view
        # supporters, and saves the posted form as a revert without asking
        # whether they may change them.
        if request.method == "POST" and not self.has_change_history_permission(request):
            raise PermissionDenied
        return super().history_form_view(request, object_id, version_id, extra_context)

    # GDPR views ---------------------------------------------------------------

    def export_data_view(self, request, pk):
        if not request.user.has_perm("crm.export_supporter_data"):
            raise PermissionDenied
        supporter = get_object_or_404(Supporter, pk=pk)
        data = services.supporter_export_data(supporter=supporter, actor=request.user)
        response = HttpResponse(
            json.dumps(data, indent=2, ensure_ascii=False), content_type="application/json"
        )
        response["Content-Disposition"] = f'attachment; filename="supporter-{pk}.json"'
        return response

    def erase_view(self, request, pk):
        if not request.user.has_perm("crm.erase_supporter"):
            raise PermissionDenied
        supporter = get_object_or_404(Supporter, pk=pk)
        if request.method == "POST":
            services.supporter_erase(supporter=supporter, actor=request.user)
            self.message_user(
                request,
                f"Supporter #{pk} was erased: personal data removed and the address suppressed.",
                messages.SUCCESS,
            )
            return redirect("admin:crm_supporter_change", pk)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "supporter": supporter,
            "title": "Erase this supporter?",
        }
        return TemplateResponse(request, "admin/crm/supporter/erase_confirm.html", context)

    def revoke_links_view(self, request, pk):
        if request.method != "POST" or not self.has_change_permission(request):
            raise PermissionDenied
        supporter = get_object_or_404(Supporter, pk=pk)
        services.supporter_revoke_links(supporter=supporter, actor=request.user)
        self.message_user(request, "Every email link sent to this supporter no longer works.")
        return redirect("admin:crm_supporter_change", pk)

    # Bulk actions (each asks for confirmation on an intermediate page) ---------

    def _action_form(self, request, queryset, form_class, title, action):
        form = form_class(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            return form
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            "form": form,
            "queryset": queryset,
            "count": queryset.count(),
            "action": action,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "select_across": request.POST.get("select_across", "0"),
        }
        return TemplateResponse(request, "admin/crm/supporter/bulk_action.html", context)

    def _interest_action(self, request, queryset, *, subscribe):
        verb = "Subscribe" if subscribe else "Unsubscribe"
        action = "subscribe_action" if subscribe else "unsubscribe_action"
        form = self._action_form(
            request, queryset, InterestActionForm, f"{verb} the selected supporters", action
        )
        if not isinstance(form, forms.Form):
            return form
        interest = form.cleaned_data["interest"]
        if not subscribe:
            count = services.supporters_unsubscribe(
                supporters=queryset, interest=interest, actor=request.user, method="staff"
            )
            self.message_user(request, f"Unsubscribed {count} supporter(s) from “{interest}”.")
            return None
        done = services.supporters_subscribe(
            supporters=queryset, interest=interest, actor=request.user, method="staff"
        )
        self.message_user(request, f"Subscribed {done.subscribed} supporter(s) to “{interest}”.")
        if done.already:
            self.message_user(request, f"{done.already} were subscribed already.")
        why = []
        if done.opted_out:
            why.append(
                f"{done.opted_out} unsubscribed from all email or from “{interest}” (only "
                "they can subscribe again, from the link in any email)"
            )
        if done.unmailable:
            why.append(
                f"{done.unmailable} cannot be emailed (bounced, complained, erased or on the "
                "suppression list)"
            )
        if why:
            left = done.opted_out + done.unmailable
            self.message_user(
                request, f"Left {left} as they are: {'; '.join(why)}.", messages.WARNING
            )
        return None

    @admin.action(description="Subscribe to an interest…", permissions=["change"])
    def subscribe_action(self, request, queryset):
        return self._interest_action(request, queryset, subscribe=True)

    @admin.action(description="Unsubscribe from an interest…", permissions=["change"])
    def unsubscribe_action(self, request, queryset):
        return self._interest_action(request, queryset, subscribe=False)

    @admin.action(description="Add to a static segment…", permissions=["change"])
    def add_to_segment_action(self, request, queryset):
        form = self._action_form(
            request,
            queryset,
            SegmentActionForm,
            "Add to a static segment",
            "add_to_segment_action",
        )
        if not isinstance(form, forms.Form):
            return form
        segment = form.cleaned_data["segment"]
        count = services.segment_add_members(
            segment=segment, supporters=queryset, actor=request.user
        )
        self.message_user(request, f"Added {count} supporter(s) to “{segment}”.")
        return None

    @admin.action(description="Remove from a static segment…", permissions=["change"])
    def remove_from_segment_action(self, request, queryset):
        form = self._action_form(
            request,
            queryset,
            SegmentActionForm,
            "Remove from a static segment",
            "remove_from_segment_action",
        )
        if not isinstance(form, forms.Form):
            return form
        segment = form.cleaned_data["segment"]
        count = services.segment_remove_members(
            segment=segment, supporters=queryset, actor=request.user
        )
        self.message_user(request, f"Removed {count} supporter(s) from “{segment}”.")
        return None
