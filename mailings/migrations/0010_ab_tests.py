# A/B test variants, and the deliverability guard's pause.

import django.core.validators
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('mailings', '0009_journeys'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='ABTest',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('test_percent', models.PositiveSmallIntegerField(default=20, help_text='The share of the audience that tests the variants, split evenly between them. The rest get the winner. 100: everyone gets a variant, nobody waits.', validators=[django.core.validators.MinValueValidator(2), django.core.validators.MaxValueValidator(100)], verbose_name='test share (%)')),
                ('measure', models.CharField(choices=[('clicks', 'Unique clicks'), ('opens', 'Unique opens (unreliable: Apple Mail opens every message)')], default='clicks', help_text='Opens are counted by a hidden image: Apple Mail loads it for every message, so opens can make a variant look better than it is. Clicks are real.', max_length=16, verbose_name='winner by')),
                ('test_hours', models.PositiveSmallIntegerField(default=4, help_text='How long to wait for results after the test messages start going out.', validators=[django.core.validators.MinValueValidator(1), django.core.validators.MaxValueValidator(168)], verbose_name='test length (hours)')),
                ('choose', models.CharField(choices=[('auto', 'Automatically, when the test ends'), ('staff', "By staff, on the mailing's page")], default='auto', max_length=16, verbose_name='winner chosen')),
                ('ends_at', models.DateTimeField(blank=True, editable=False, null=True)),
                ('winner_chosen_at', models.DateTimeField(blank=True, editable=False, null=True)),
                ('mailing', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='ab_test', to='mailings.mailing')),
                ('winner_chosen_by', models.ForeignKey(blank=True, editable=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'verbose_name': 'A/B test',
                'verbose_name_plural': 'A/B test',
            },
        ),
        migrations.CreateModel(
            name='Variant',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('position', models.PositiveSmallIntegerField(default=0, editable=False)),
                ('subject', models.CharField(help_text='Merge fields work here too: {{ first_name }}.', max_length=255)),
                ('preheader', models.CharField(blank=True, help_text="Empty: the mailing's own preheader.", max_length=255)),
                ('blocks', models.JSONField(blank=True, default=list)),
                ('mailing', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='variants', to='mailings.mailing')),
            ],
            options={
                'ordering': ['position', 'pk'],
                'constraints': [models.UniqueConstraint(fields=('mailing', 'position'), name='mailings_variant_once')],
            },
        ),
        migrations.AddField(
            model_name='abtest',
            name='winner',
            field=models.ForeignKey(blank=True, editable=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='mailings.variant'),
        ),
        migrations.AddIndex(
            model_name='abtest',
            index=models.Index(condition=models.Q(('winner__isnull', True)), fields=['ends_at'], name='mailings_abtest_due'),
        ),
        # A constant database default: PostgreSQL adds the column without
        # rewriting the deliveries table, and code of the previous release can
        # still insert rows while an upgrade rolls out.
        migrations.AddField(
            model_name='delivery',
            name='in_ab_test',
            field=models.BooleanField(db_default=False, default=False),
        ),
        # Nullable and not indexed: no rewrite, no index build on a large table.
        migrations.AddField(
            model_name='delivery',
            name='variant',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='deliveries', to='mailings.variant'),
        ),
        migrations.AlterField(
            model_name='delivery',
            name='status',
            field=models.CharField(choices=[('queued', 'Queued'), ('sending', 'Sending'), ('sent', 'Sent'), ('failed', 'Failed'), ('unknown', 'Fate unknown'), ('skipped', 'Skipped (no longer subscribed)'), ('cancelled', 'Cancelled'), ('held', "Waiting for the A/B test's winner")], default='queued', max_length=16),
        ),
        migrations.AddField(
            model_name='mailing',
            name='guard_tripped',
            field=models.CharField(blank=True, default='', editable=False, max_length=16),
        ),
    ]
