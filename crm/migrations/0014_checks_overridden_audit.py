# Audit events for newsletters allowed to be sent despite accessibility problems.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('crm', '0013_partner_consents_and_optout_files'),
    ]

    operations = [
        migrations.AlterField(
            model_name='auditevent',
            name='kind',
            field=models.CharField(choices=[('consent_granted', 'Consent granted'), ('consent_withdrawn', 'Consent withdrawn'), ('suppressed', 'Address suppressed'), ('unsuppressed', 'Address removed from the suppression list'), ('segment_added', 'Added to segment'), ('segment_removed', 'Removed from segment'), ('segment_changed', 'Segment rules changed'), ('data_exported', 'Personal data exported'), ('erased', 'Supporter erased'), ('exported', 'List exported'), ('imported', 'List imported'), ('import_reverted', 'List import reverted'), ('links_revoked', 'Email links revoked'), ('checks_overridden', 'Sending allowed despite accessibility problems')], max_length=32),
        ),
    ]
