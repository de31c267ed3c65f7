"""
Actions in the staff admin: campaign managers write an action (its text with
the composer's blocks, the fields asked, the goal, the interests a signer may
join and the co-sponsoring partners with their own boxes), publish it, and
read who signed from where. From an action's page: the signatures for the
target as a CSV (names and postcodes, no email addresses), and a static
segment of its signers.
"""

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils import timezone
from django.utils.html import format_html

from crm.models import PartnerConsent, Supporter
from mailings.actions import services
from mailings.actions.models import FIELDS, ORIGIN, Action, ActionPartner, Signature
from mailings.composer import blocks as composer_blocks
from mailings.composer.widgets import BlocksWidget

SEGMENT_PERMISSION = "crm.add_segment"
SIGNATURES_PERMISSION = "actions.view_signature"
# Blocks an action page offers: no raw HTML, no merge fields (nobody is known yet).
PAGE_BLOCK_TYPES = tuple(
    (kind, label) for kind, label in BlocksWidget().block_types if kind != "html"
)


class FieldsChoice(forms.MultipleChoiceField):
    widget = forms.CheckboxSelectMultiple

    def __init__(self, **kwargs):
        super().__init__(choices=list(FIELDS.items()), required=False, **kwargs)


class ActionForm(forms.ModelForm):
    fields = FieldsChoice(
        label="Fields asked",
        help_text="Email address is always asked. Name and postcode are usual for a petition.",
    )

    class Meta:
        model = Action
        fields = (
            "kind",
            "title",
            "slug",
            "status",
            "summary",
            "target",
            "blocks",
            "fields",
            "goal",
            "button_label",
            "thank_you",
            "interests",
            "opt_in_wording",
        )
        widgets = {
            "interests": forms.CheckboxSelectMultiple,
            "thank_you": forms.Textarea(attrs={"rows": 3}),
            "opt_in_wording": forms.Textarea(attrs={"rows": 3}),
        }
        labels = {"blocks": "Text"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.instance.fields:
            self.initial["fields"] = self.instance.asked()

    def clean_blocks(self):
        previous = self.instance.blocks if self.instance.pk else ()
        try:
            return composer_blocks.clean_blocks(
                self.cleaned_data.get("blocks"), allow_html=False, previous=previous
            )
        except composer_blocks.BlockError as error:
            raise forms.ValidationError(error.messages) from None


class ActionPartnerForm(forms.ModelForm):
    privacy_url = forms.URLField(
        label="Privacy notice", max_length=500, assume_scheme="https", help_text="Its address."
    )
    shared_fields = FieldsChoice(
        label="Shared with them",
        help_text="Besides the email address; only fields the action asks are shared.",
    )

    class Meta:
        model = ActionPartner
        fields = ("partner", "wording", "privacy_url", "shared_fields", "embed_origins")
        widgets = {
            "wording": forms.Textarea(attrs={"rows": 2, "cols": 40}),
            "embed_origins": forms.Textarea(attrs={"rows": 2, "cols": 30}),
        }

    def clean_embed_origins(self):
        origins = [line.strip() for line in self.cleaned_data["embed_origins"].splitlines()]
        bad = [o for o in origins if o and not _is_origin(o)]
        if bad:
            raise forms.ValidationError(
                f"{', '.join(bad)}: write each as https://www.example.org, with no path."
            )
        return "\n".join(o.rstrip("/") for o in origins if o)


def _is_origin(value):
    return bool(ORIGIN.fullmatch(value.rstrip("/")))


class ActionPartnerInline(admin.StackedInline):
    model = ActionPartner
    form = ActionPartnerForm
    extra = 0


def form_snippet(action, post_url) -> str:
    """Return a plain HTML form a partner can put on their own page, posting to `post_url`."""
    types = {"phone": "tel", "email": "email"}
    lines = [f'<form method="post" action="{post_url}">']
    lines.append('  <input type="hidden" name="source" value="PARTNER-SLUG">')
    for name in ["email", *action.asked()]:
        label = "Email address" if name == "email" else FIELDS[name]
        kind = types.get(name, "text")
        lines.append(f'  <label>{label} <input type="{kind}" name="{name}" required></label>')
    if action.interests.exists():
        lines.append(
            f'  <label><input type="checkbox" name="opt_in"> {action.charity_wording()}</label>'
        )
    for cosponsor in action.cosponsors.select_related("partner"):
        lines.append(
            f'  <label><input type="checkbox" name="partners" value="{cosponsor.partner.slug}"> '
            f'{cosponsor.wording} <a href="{cosponsor.privacy_url}">Privacy notice</a></label>'
        )
    lines.append('  <button type="submit">Sign</button>')
    lines.append("</form>")
    return "\n".join(lines)


@admin.register(Action)
class ActionAdmin(admin.ModelAdmin):
    form = ActionForm
    inlines = [ActionPartnerInline]
    list_display = ("title", "kind", "status", "signature_count", "goal", "created_at")
    list_filter = ("status", "kind")
    search_fields = ("title", "slug")
    prepopulated_fields = {"slug": ("title",)}
    readonly_fields = ("results",)

    class Media:
        css = {"all": ["actions/admin.css"]}

    fieldsets = [
        (None, {"fields": ("kind", "title", "slug", "status", "summary", "target", "blocks")}),
        ("The form", {"fields": ("fields", "goal", "button_label", "thank_you")}),
        (
            "Hearing from us",
            {
                "fields": ("interests", "opt_in_wording"),
                "description": "Signers who tick the box are subscribed to these topics once "
                "they confirm their address. With no topic chosen, the box is not shown.",
            },
        ),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(signed=Count("signatures"))

    @admin.display(description="Signatures", ordering="signed")
    def signature_count(self, action):
        return f"{action.signed:,}"

    def get_fieldsets(self, request, obj=None):
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is not None:
            fieldsets.insert(0, ("Results and sharing", {"fields": ("results",)}))
        return fieldsets

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        if "blocks" in form.base_fields:
            try:
                upload_url = reverse("admin:mailings_composer_upload")
            except NoReverseMatch:
                upload_url = ""
            form.base_fields["blocks"].widget = BlocksWidget(
                upload_url=upload_url, block_types=PAGE_BLOCK_TYPES, merge_fields=()
            )
            form.base_fields["blocks"].help_text = ""
        return form

    def save_model(self, request, obj, form, change):
        if obj.created_by_id is None:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    @admin.display(description="")
    def results(self, action):
        if action.pk is None:
            return ""
        signatures = Signature.objects.filter(action=action)
        page = f"{settings.SITE_URL}{reverse('action', args=[action.slug])}"
        embed = f"{settings.SITE_URL}{reverse('action-embed', args=[action.slug])}"
        cosponsors = list(action.cosponsors.select_related("partner"))
        label = services.action_label(action)
        opted_in = dict(
            PartnerConsent.objects.filter(source=label, action=PartnerConsent.Action.GRANTED)
            .values_list("partner__name")
            .annotate(people=Count("supporter", distinct=True))
        )
        context = {
            "action": action,
            "total": signatures.count(),
            "opted_in": signatures.filter(opted_in=True).count(),
            "pending": signatures.filter(confirmation=Signature.Confirmation.PENDING).count(),
            "sources": list(signatures.by_source()),
            "cosponsors": [
                {
                    "name": c.partner.name,
                    "slug": c.partner.slug,
                    "signed": signatures.filter(source_partner=c.partner).count(),
                    "opted_in": opted_in.get(c.partner.name, 0),
                    "link": f"{page}?source={c.partner.slug}",
                    "iframe": format_html(
                        '<iframe src="{}?source={}" title="{}" width="100%" height="1100" '
                        'style="border:0"></iframe>',
                        embed,
                        c.partner.slug,
                        action.title,
                    ),
                    "origins": c.origins(),
                }
                for c in cosponsors
            ],
            "page": page,
            "form_snippet": form_snippet(action, page),
            "csv_url": reverse("admin:actions_action_target_csv", args=[action.pk]),
            "segment_url": reverse("admin:actions_action_segment", args=[action.pk]),
            "signatures_url": reverse("admin:actions_signature_changelist")
            + f"?action__id__exact={action.pk}",
        }
        return render_to_string("admin/actions/action/_results.html", context)

    def get_urls(self):
        return [
            path(
                "<int:pk>/signatures.csv",
                self.admin_site.admin_view(self.target_csv_view),
                name="actions_action_target_csv",
            ),
            path(
                "<int:pk>/segment/",
                self.admin_site.admin_view(self.segment_view),
                name="actions_action_segment",
            ),
            *super().get_urls(),
        ]

    def target_csv_view(self, request, pk):
        """The signatures to hand to the target: names, postcodes, when; no email addresses."""
        if not request.user.has_perm(SIGNATURES_PERMISSION):
            raise PermissionDenied
        action = get_object_or_404(Action, pk=pk)
        result = services.action_target_csv(action=action, actor=request.user)
        response = HttpResponse(result.content, content_type=result.content_type)
        response["Content-Disposition"] = f'attachment; filename="{result.file_name}"'
        return response

    def segment_view(self, request, pk):
        """GET asks, POST makes a static segment of everyone who signed."""
        if not (
            request.user.has_perm(SEGMENT_PERMISSION)
            and request.user.has_perm(SIGNATURES_PERMISSION)
        ):
            raise PermissionDenied
        action = get_object_or_404(Action, pk=pk)
        if request.method == "POST":
            segment = services.action_signers_to_segment(action=action, actor=request.user)
            members = segment.memberships.count()
            messages.success(request, f"Made the segment “{segment.name}” of {members:,} signers.")
            return HttpResponseRedirect(reverse("admin:crm_segment_change", args=[segment.pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "action": action,
            "signers": Supporter.objects.filter(signatures__action=action)
            .exclude(status=Supporter.Status.ERASED)
            .count(),
            "title": f"Make a segment of the signers of “{action.title}”",
            "today": timezone.localdate(),
        }
        return TemplateResponse(request, "admin/actions/action/segment.html", context)


@admin.register(Signature)
class SignatureAdmin(admin.ModelAdmin):
    list_display = ("supporter_link", "action", "source", "opted_in", "confirmation", "created_at")
    list_filter = ("action", "source_partner", "confirmation", "opted_in")
    list_select_related = ("supporter", "action")
    search_fields = ("source",)
    date_hierarchy = "created_at"
    fields = (
        "action",
        "supporter_link",
        "source",
        "source_partner",
        "opted_in",
        "partner_names",
        "confirmation",
        "created_at",
        "confirmed_at",
        "page_url",
    )
    readonly_fields = fields

    @admin.display(description="Supporter")
    def supporter_link(self, signature):
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:crm_supporter_change", args=[signature.supporter_id]),
            signature.supporter,
        )

    @admin.display(description="Partner boxes ticked")
    def partner_names(self, signature):
        from crm.models import PartnerOrganisation

        ids = [choice["partner"] for choice in signature.partner_choices]
        names = PartnerOrganisation.objects.filter(pk__in=ids).values_list("name", flat=True)
        return ", ".join(names) or "None"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
