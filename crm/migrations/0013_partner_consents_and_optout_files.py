# Partner opt-ins (from action pages) and receipts of the opt-out files partners send.

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("crm", "0012_segment_size_partner_columns"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name="consentrecord",
            name="method",
            field=models.CharField(
                choices=[
                    ("signup_form", "Sign-up form"),
                    ("email_link", "Email link"),
                    ("one_click", "One-click unsubscribe"),
                    ("staff", "Staff"),
                    ("partner_import", "Partner import"),
                    ("complaint", "Complaint (via ESP webhook)"),
                    ("bounce", "Hard bounce (via ESP webhook)"),
                    ("esp_unsubscribe", "Unsubscribe at the ESP (via webhook)"),
                    ("action_page", "Action page"),
                    ("partner_opt_out", "Opt-out sent by a partner"),
                ],
                max_length=32,
            ),
        ),
        migrations.CreateModel(
            name="PartnerOptOutFile",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("file_name", models.CharField(max_length=255)),
                ("file_hash", models.CharField(help_text="SHA-256 of the file.", max_length=64)),
                (
                    "rows",
                    models.PositiveIntegerField(default=0, help_text="Addresses in the file."),
                ),
                (
                    "matched",
                    models.PositiveIntegerField(
                        default=0, help_text="Rows that matched a supporter."
                    ),
                ),
                (
                    "withdrawn",
                    models.PositiveIntegerField(
                        default=0,
                        help_text="Supporters who had something from this partner withdrawn.",
                    ),
                ),
                ("subscriptions_withdrawn", models.PositiveIntegerField(default=0)),
                ("opt_ins_withdrawn", models.PositiveIntegerField(default=0)),
                (
                    "unmatched",
                    models.JSONField(
                        blank=True,
                        default=list,
                        help_text="[row number, address] of rows that matched nobody.",
                    ),
                ),
                (
                    "invalid",
                    models.JSONField(
                        blank=True,
                        default=list,
                        help_text="[row number, value] of rows with no usable address.",
                    ),
                ),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "created_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "partner",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="optout_files",
                        to="crm.partnerorganisation",
                    ),
                ),
            ],
            options={
                "verbose_name": "partner opt-out file",
                "ordering": ["-created_at", "-id"],
            },
        ),
        migrations.CreateModel(
            name="PartnerConsent",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "action",
                    models.CharField(
                        choices=[("granted", "Opted in"), ("withdrawn", "Withdrawn")], max_length=16
                    ),
                ),
                (
                    "fields",
                    models.JSONField(
                        blank=True,
                        default=list,
                        help_text="Supporter fields shared besides the email address.",
                    ),
                ),
                (
                    "wording",
                    models.TextField(blank=True, help_text="The exact wording shown, if any."),
                ),
                ("wording_version", models.CharField(blank=True, max_length=64)),
                (
                    "page_url",
                    models.CharField(blank=True, help_text="Where it was given.", max_length=500),
                ),
                (
                    "source",
                    models.CharField(blank=True, help_text="What made the change.", max_length=200),
                ),
                ("ip_address", models.GenericIPAddressField(blank=True, null=True)),
                (
                    "created_at",
                    models.DateTimeField(default=django.utils.timezone.now, editable=False),
                ),
                (
                    "partner",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="consents",
                        to="crm.partnerorganisation",
                    ),
                ),
                (
                    "supporter",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="partner_consents",
                        to="crm.supporter",
                    ),
                ),
                (
                    "optout_file",
                    models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="consents",
                        to="crm.partneroptoutfile",
                    ),
                ),
            ],
            options={
                "verbose_name": "partner opt-in",
                "ordering": ["-created_at", "-id"],
                "indexes": [
                    models.Index(
                        fields=["supporter", "partner", "created_at"],
                        name="crm_partnerconsent_supporter",
                    ),
                    models.Index(
                        fields=["partner", "created_at"], name="crm_partnerconsent_partner"
                    ),
                    models.Index(
                        condition=models.Q(("optout_file__isnull", False)),
                        fields=["optout_file"],
                        name="crm_partnerconsent_optout",
                    ),
                ],
            },
        ),
    ]
