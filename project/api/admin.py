"""
API keys and webhook endpoints in the staff admin.

Superusers and campaign managers manage them (crm.roles). A key can carry
only the scopes its maker could use in the admin themselves, so a key never
does more than the person who made it: writing supporters needs the right to
change supporters, and so on. A new key's text is shown once, on the page
that follows its creation, and never again.
"""

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db import models
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from project.api import keys, webhooks
from project.api.models import ApiKey, Event, Scope, WebhookDelivery, WebhookEndpoint

# The permission a staff member needs to give a key each scope.
SCOPE_PERMISSIONS = {
    Scope.READ_SUPPORTERS: "crm.view_supporter",
    Scope.WRITE_SUPPORTERS: "crm.change_supporter",
    Scope.SIGN_ACTIONS: "crm.add_supporter",
    Scope.READ_MAILINGS: "mailings.view_mailing",
}


def _grantable(user):
    return [
        (value, label) for value, label in Scope.choices if user.has_perm(SCOPE_PERMISSIONS[value])
    ]


class ApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        help_text="What the key may do. You can give only what you may do yourself.",
    )

    class Meta:
        model = ApiKey
        fields = ["name", "scopes", "partner"]

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["scopes"].choices = _grantable(user)
        if self.instance.pk:
            self.fields["partner"].disabled = True
            self.fields["partner"].help_text = "A key's partner cannot change; make a new key."


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm

    class Media:
        css = {"all": ["api/admin.css"]}

    list_display = ["name", "prefix_shown", "partner", "scopes_shown", "last_used_at", "state"]
    list_filter = ["partner"]
    search_fields = ["name", "prefix"]
    readonly_fields = ["prefix_shown", "created_by", "created_at", "last_used_at", "call_count"]
    actions = ["revoke"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)

        class WithUser(form):
            def __init__(self, *args, **inner):
                super().__init__(*args, user=request.user, **inner)

        return WithUser

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [(None, {"fields": ["name", "scopes", "partner"]})]
        return [
            (None, {"fields": ["name", "prefix_shown", "scopes", "partner"]}),
            ("Use", {"fields": ["created_by", "created_at", "last_used_at", "call_count"]}),
        ]

    @admin.display(description="key")
    def prefix_shown(self, key):
        return f"rally_{key.prefix}_…"

    @admin.display(description="scopes")
    def scopes_shown(self, key):
        return ", ".join(key.scopes) or "none"

    @admin.display(description="state")
    def state(self, key):
        return f"Revoked {key.revoked_at:%d/%m/%Y}" if key.revoked_at else "In use"

    def save_model(self, request, obj, form, change):
        if change:
            obj.scopes = sorted(form.cleaned_data["scopes"])
            obj.save()
            return
        key, text = keys.api_key_create(
            name=obj.name,
            scopes=form.cleaned_data["scopes"],
            partner=obj.partner,
            created_by=request.user,
        )
        obj.pk, obj.prefix = key.pk, key.prefix
        request._new_api_key = text

    def response_add(self, request, obj, post_url_continue=None):
        # The key is shown on this page only: it is kept as a hash, never in a
        # message (messages travel in a cookie) or a log.
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Copy the new API key now",
            "key": obj,
            "text": request._new_api_key,
        }
        response = TemplateResponse(request, "admin/api/apikey/created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(
        description="Revoke the selected keys (they stop working at once)", permissions=["change"]
    )
    def revoke(self, request, queryset):
        for key in queryset.filter(revoked_at__isnull=True):
            keys.api_key_revoke(key=key)
        self.message_user(request, "The selected keys were revoked.", messages.SUCCESS)

    def has_delete_permission(self, request, obj=None):
        # Revoked, not deleted: the audit trail names keys by their prefix.
        return False


def _https_first(field, **kwargs):
    if isinstance(field, models.URLField):
        kwargs["assume_scheme"] = "https"
    return field.formfield(**kwargs)


class EndpointForm(forms.ModelForm):
    events = forms.MultipleChoiceField(
        choices=Event.choices,
        widget=forms.CheckboxSelectMultiple,
        help_text="What to send. Erasures carry the supporter's id only.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["name", "url", "partner", "events", "is_active"]
        formfield_callback = _https_first

    def clean_url(self):
        url = self.cleaned_data["url"]
        if not url.startswith("https://") and not settings.RALLY_WEBHOOK_ALLOW_PRIVATE:
            raise forms.ValidationError("Use an https:// address: events carry personal data.")
        return url


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = EndpointForm
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    class Media:
        css = {"all": ["api/admin.css"]}

    list_display = ["name", "url", "partner", "state", "last_success_at", "consecutive_failures"]
    list_filter = ["partner", "is_active"]
    search_fields = ["name", "url"]
    readonly_fields = [
        "state",
        "secret_shown",
        "last_success_at",
        "last_failure_at",
        "consecutive_failures",
        "recent_deliveries",
    ]
    actions = ["resume", "new_secret"]

    def get_fieldsets(self, request, obj=None):
        main = (None, {"fields": ["name", "url", "partner", "events", "is_active"]})
        if obj is None:
            return [main]
        return [
            main,
            (
                "Signing",
                {
                    "fields": ["secret_shown"],
                    "description": "The receiver checks each request's Rally-Signature with "
                    "this secret (docs/api.md shows how). Keep it as you would a password.",
                },
            ),
            (
                "Deliveries",
                {
                    "fields": [
                        "state",
                        "last_success_at",
                        "last_failure_at",
                        "consecutive_failures",
                        "recent_deliveries",
                    ]
                },
            ),
        ]

    def save_model(self, request, obj, form, change):
        obj.events = sorted(form.cleaned_data["events"])
        if change:
            obj.save()
            return
        created = webhooks.webhook_endpoint_create(
            name=obj.name,
            url=obj.url,
            events=obj.events,
            partner=obj.partner,
            created_by=request.user,
        )
        obj.pk, obj.secret, obj.created_at = created.pk, created.secret, created.created_at
        WebhookEndpoint.objects.filter(pk=obj.pk).update(is_active=obj.is_active)

    @admin.display(description="state")
    def state(self, endpoint):
        if not endpoint.is_active:
            return "Off"
        if endpoint.paused_at:
            return f"Paused {timezone.localtime(endpoint.paused_at):%d/%m/%Y %H:%M} (failing)"
        return "Sending"

    @admin.display(description="signing secret")
    def secret_shown(self, endpoint):
        return format_html("<code>{}</code>", endpoint.secret)

    @admin.display(description="last 30 deliveries")
    def recent_deliveries(self, endpoint):
        deliveries = endpoint.deliveries.order_by("-created_at", "-id")[:30]
        if not deliveries:
            return "None yet."
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    f"{timezone.localtime(d.occurred_at):%d/%m/%Y %H:%M}",
                    d.get_event_display(),
                    d.get_status_display(),
                    d.attempts,
                    d.last_status_code or "",
                    d.last_error
                    or (
                        f"next try {timezone.localtime(d.next_attempt_at):%H:%M}"
                        if d.status == WebhookDelivery.Status.PENDING
                        else ""
                    ),
                )
                for d in deliveries
            ),
        )
        return format_html(
            "<table class='api-deliveries'><thead><tr><th>Happened</th><th>Event</th>"
            "<th>Status</th><th>Attempts</th><th>Answer</th><th>Last error</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            rows,
        )

    def changelist_view(self, request, extra_context=None):
        for endpoint in WebhookEndpoint.objects.filter(is_active=True, paused_at__isnull=False):
            messages.warning(
                request,
                f"“{endpoint.name}” is paused: its last {endpoint.consecutive_failures} "
                "deliveries failed. Its events wait for it; open it to see the errors, then "
                "resume it with the action below.",
            )
        return super().changelist_view(request, extra_context)

    @admin.action(
        description="Resume the selected endpoints (send what waits now)", permissions=["change"]
    )
    def resume(self, request, queryset):
        for endpoint in queryset:
            webhooks.webhook_endpoint_resume(endpoint=endpoint)
        self.message_user(request, "Resumed: waiting events are being sent.", messages.SUCCESS)

    @admin.action(
        description="Give the selected endpoints a new signing secret", permissions=["change"]
    )
    def new_secret(self, request, queryset):
        for endpoint in queryset:
            webhooks.webhook_endpoint_new_secret(endpoint=endpoint)
        self.message_user(
            request, "New secrets made: give each receiver its new one.", messages.SUCCESS
        )


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "occurred_at",
        "endpoint",
        "event",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
    ]
    list_filter = ["status", "event", "endpoint"]
    list_select_related = ["endpoint"]
    readonly_fields = [field.name for field in WebhookDelivery._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
