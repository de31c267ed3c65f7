# Newsletters made of blocks, email templates, the web copy and archive.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('mailings', '0007_mailing_stats'),
    ]

    operations = [
    ]
