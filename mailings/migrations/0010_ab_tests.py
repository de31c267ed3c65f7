# A/B test variants, and the deliverability guard's pause.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('mailings', '0009_journeys'),
    ]

    operations = [
    ]
