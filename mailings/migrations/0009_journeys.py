# The sending ledger carries journey emails.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('mailings', '0008_composer'),
    ]

    operations = [
    ]
