from django.db import migrations

ROLES = ("Membership staff", "Campaign managers")


def create_roles(apps, schema_editor):
    # Permissions are given to the groups after migrate by crm.roles.sync_role_permissions.
    Group = apps.get_model("auth", "Group")
    for name in ROLES:
        Group.objects.get_or_create(name=name)


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("crm", "0002_initial"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
