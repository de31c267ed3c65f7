# The ready-made re-permission segment: supporters who joined over a year ago and
# neither opened nor clicked any mailing in the last 12 months.

from django.db import migrations

NAME = "Not opened or clicked in 12 months"


def create(apps, schema_editor):
    Segment = apps.get_model("crm", "Segment")
    Segment.objects.get_or_create(
        name=NAME,
        defaults={
            "kind": "rules",
            "rules": {"quiet_for_days": 365},
            "description": (
                "Joined over a year ago and neither opened nor clicked any mailing in the "
                "last 12 months: who to ask \"Do you still want to hear from us?\" "
                "(manage.py create_repermission_journey)."
            ),
        },
    )


def remove(apps, schema_editor):
    apps.get_model("crm", "Segment").objects.filter(name=NAME, rules={"quiet_for_days": 365}).delete()


class Migration(migrations.Migration):

    dependencies = [
        ('mailings', '0010_ab_tests'),
        ('crm', '0014_checks_overridden_audit'),
    ]

    operations = [
        migrations.RunPython(create, remove),
    ]
