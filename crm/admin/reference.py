"""The CRM's other tables in the admin: interests, partners, tags, suppressions, consent, audit."""

from django import forms
from django.contrib import admin
from django.db import models, transaction

from crm import services
from crm.admin.common import EstimatingPaginator, ReadOnlyAdmin
from crm.admin.sync import (  # also registers ImportBatchAdmin
    PartnerSyncMixin,
)
from crm.models import (
    AuditEvent,
    CampaignInterest,
    ConsentRecord,
    PartnerOrganisation,
    Subscription,
    Suppression,
    Tag,
)


@admin.register(CampaignInterest)
class CampaignInterestAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "is_public", "position", "subscriber_count")
    list_editable = ("position",)
    prepopulated_fields = {"slug": ("name",)}

    @admin.display(description="subscribers")
    def subscriber_count(self, interest):
        return interest.subscriptions.filter(status=Subscription.Status.SUBSCRIBED).count()


@admin.register(PartnerOrganisation)
class PartnerOrganisationAdmin(PartnerSyncMixin, admin.ModelAdmin):
    # Websites typed without a scheme are https (Django 6's default, chosen now).
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = ("name", "slug", "lawful_basis", "agreement_date", "is_active", "last_synced_at")
    list_filter = ("is_active", "lawful_basis")
    prepopulated_fields = {"slug": ("name",)}
    search_fields = ("name",)


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    search_fields = ("name",)


class SuppressionForm(forms.ModelForm):
    email_to_suppress = forms.EmailField(
        label="Email address", help_text="Only a keyed hash of the address is stored."
    )

    class Meta:
        model = Suppression
        fields = ("reason", "note")


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    """Staff add addresses by typing them; the list shows only hashes and reasons."""

    form = SuppressionForm
    list_display = ("created_at", "reason", "note")
    list_filter = ("reason",)
    readonly_fields = ("email_hash", "reason", "note", "created_by", "created_at")

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("email_to_suppress", "reason", "note")
        return self.readonly_fields

    def save_model(self, request, obj, form, change):
        entry = services.suppression_add(
            email=form.cleaned_data["email_to_suppress"],
            reason=obj.reason,
            note=obj.note,
            actor=request.user,
        )
        obj.pk = entry.pk

    def delete_model(self, request, obj):
        services.suppression_remove(entry=obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            for entry in queryset:
                services.suppression_remove(entry=entry, actor=request.user)

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ConsentRecord)
class ConsentRecordAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "supporter", "interest", "action", "method", "partner")
    list_filter = ("action", "method", "interest")
    raw_id_fields = ("supporter",)
    list_select_related = ("supporter", "interest", "partner")
    paginator = EstimatingPaginator
    show_full_result_count = False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "kind", "supporter_id", "actor", "source")
    list_filter = ("kind",)
    list_select_related = ("actor",)
    paginator = EstimatingPaginator
    show_full_result_count = False
