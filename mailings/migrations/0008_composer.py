# Newsletters made of blocks, email templates, the web copy and archive.

import secrets

import django.core.validators
import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

import mailings.models

_COLOUR = django.core.validators.RegexValidator(
    "^#[0-9a-fA-F]{6}$", "Write a colour as # and six hex digits, e.g. #0d3b4f."
)


def fill_public_ids(apps, schema_editor):
    Mailing = apps.get_model("mailings", "Mailing")
    for mailing in Mailing.objects.filter(public_id__isnull=True).only("pk"):
        Mailing.objects.filter(pk=mailing.pk).update(public_id=secrets.token_urlsafe(16))


def body_html_to_blocks(apps, schema_editor):
    """Each newsletter's raw HTML becomes one "html" block; a written body_text stays."""
    Mailing = apps.get_model("mailings", "Mailing")
    for mailing in Mailing.objects.exclude(body_html="").only("pk", "body_html", "blocks"):
        if mailing.blocks or not mailing.body_html.strip():
            continue
        Mailing.objects.filter(pk=mailing.pk).update(
            blocks=[{"id": "body", "type": "html", "html": mailing.body_html}], body_html=""
        )


def blocks_to_body_html(apps, schema_editor):
    """Undo: a newsletter that is one "html" block gets its raw HTML back."""
    Mailing = apps.get_model("mailings", "Mailing")
    for mailing in Mailing.objects.filter(body_html="").only("pk", "blocks"):
        blocks = mailing.blocks or []
        if len(blocks) == 1 and blocks[0].get("type") == "html":
            Mailing.objects.filter(pk=mailing.pk).update(body_html=blocks[0].get("html", ""))


class Migration(migrations.Migration):

    dependencies = [
        ('mailings', '0007_mailing_stats'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='mailing',
            options={'ordering': ['-created_at'], 'permissions': [('send_mailing', 'Can send, schedule, pause and cancel mailings'), ('edit_html_block', 'Can edit raw HTML blocks')]},
        ),
        migrations.CreateModel(
            name='EmailTemplate',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=100)),
                ('logo', models.FileField(blank=True, help_text="PNG, JPEG or GIF, shown at most 200 px wide. Empty: the charity's name.", upload_to=mailings.models.logo_path, validators=[django.core.validators.FileExtensionValidator(['png', 'jpg', 'jpeg', 'gif']), mailings.models.validate_logo])),
                ('logo_alt', models.CharField(blank=True, help_text='What the logo says, for people who cannot see it. Empty: the site name.', max_length=100, verbose_name='logo text')),
                ('brand_colour', models.CharField(default='#0d3b4f', help_text='Header and headings.', max_length=7, validators=[_COLOUR])),
                ('button_colour', models.CharField(default='#c8102e', help_text='Buttons and accents.', max_length=7, validators=[_COLOUR])),
                ('background_colour', models.CharField(default='#f2f4f5', max_length=7, validators=[_COLOUR])),
                ('text_colour', models.CharField(default='#1d2a33', max_length=7, validators=[_COLOUR])),
                ('postal_address', models.TextField(blank=True, help_text="The charity's postal address, shown in every email's footer.")),
                ('footer_text', models.TextField(blank=True, help_text='Shown in the footer above the unsubscribe links, e.g. a charity number.')),
                ('is_default', models.BooleanField(default=False, help_text='Used by newsletters that choose none.', verbose_name='default template')),
                ('blocks', models.JSONField(blank=True, default=list, help_text='A newsletter saved as a template to start from.')),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('updated_at', models.DateTimeField(auto_now=True)),
            ],
            options={
                'ordering': ['-is_default', 'name'],
                'constraints': [models.UniqueConstraint(condition=models.Q(('is_default', True)), fields=('is_default',), name='mailings_one_default_template')],
            },
        ),
        migrations.AddField(
            model_name='mailing',
            name='blocks',
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.AddField(
            model_name='mailing',
            name='template',
            field=models.ForeignKey(blank=True, help_text='The header and footer. Empty: the default template.', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='mailings', to='mailings.emailtemplate'),
        ),
        migrations.AddField(
            model_name='mailing',
            name='checks_overridden_at',
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name='mailing',
            name='checks_overridden_by',
            field=models.ForeignKey(blank=True, editable=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='mailing',
            name='in_archive',
            field=models.BooleanField(default=False, help_text='Once sent, listed on the public /newsletters/ page.', verbose_name='list in the newsletter archive'),
        ),
        # A unique random id for each existing mailing: added empty, filled one
        # by one, then made unique and required.
        migrations.AddField(
            model_name='mailing',
            name='public_id',
            field=models.CharField(editable=False, max_length=32, null=True),
        ),
        migrations.RunPython(fill_public_ids, migrations.RunPython.noop),
        migrations.AlterField(
            model_name='mailing',
            name='public_id',
            field=models.CharField(default=mailings.models.new_public_id, editable=False, max_length=32, unique=True),
        ),
        migrations.AlterField(
            model_name='mailing',
            name='body_html',
            field=models.TextField(blank=True, help_text='Raw HTML, for newsletters written before the composer. Merge fields: {{ first_name|default:"friend" }}, {{ last_name }}, {{ full_name }}, {{ postcode }}, {{ unsubscribe_url }}, {{ preferences_url }}.', verbose_name='body (HTML)'),
        ),
        migrations.AlterField(
            model_name='mailing',
            name='body_text',
            field=models.TextField(blank=True, help_text='Leave empty to generate it from the blocks.', verbose_name='plain-text version'),
        ),
        migrations.RunPython(body_html_to_blocks, blocks_to_body_html),
    ]
