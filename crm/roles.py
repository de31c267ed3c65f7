"""
Staff roles, as Django groups.

The groups are created by a migration (crm 0002); their permissions are
(re)applied from ROLE_PERMISSIONS after every `migrate`, the way
django.contrib.auth creates permissions, so a model added later joins its role
without a hand-written migration. Superusers can do everything.
"""

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions

MEMBERSHIP_STAFF = "Membership staff"
CAMPAIGN_MANAGERS = "Campaign managers"

# "app_label.model": actions, or "app_label.codename" for a custom permission.
ROLE_PERMISSIONS = {
    MEMBERSHIP_STAFF: {
        "crm.supporter": ("view", "add", "change"),
        "crm.subscription": ("view", "add", "change"),
        "crm.consentrecord": ("view",),
        "crm.campaigninterest": ("view",),
        "crm.partnerorganisation": ("view", "change"),
        "crm.tag": ("view", "add", "change"),
        "crm.segment": ("view", "add", "change", "delete"),
        "crm.segmentmembership": ("view", "add", "change", "delete"),
        "crm.suppression": ("view", "add"),
        "crm.importbatch": ("view", "add", "change"),
        "crm.auditevent": ("view",),
        "crm.export_supporters": None,
        "crm.import_supporters": None,
        "crm.export_supporter_data": None,
        "mailings.mailing": ("view",),
        # Action pages: who signed (to make segments of them), partner opt-ins and
        # applying the opt-out files partners send back.
        "actions.action": ("view",),
        "actions.signature": ("view",),
        "crm.partnerconsent": ("view",),
        "crm.partneroptoutfile": ("view", "add"),
    },
    CAMPAIGN_MANAGERS: {
        "crm.supporter": ("view",),
        "crm.subscription": ("view",),
        "crm.campaigninterest": ("view",),
        "crm.partnerorganisation": ("view",),
        "crm.tag": ("view",),
        "crm.segment": ("view",),
        "crm.segmentmembership": ("view",),
        "mailings.*": ("view", "add", "change", "delete"),
        "mailings.send_mailing": None,
        "journeys.*": ("view", "add", "change", "delete"),
        "actions.*": ("view", "add", "change", "delete"),
        # Integrations: a key gets only the scopes its maker holds (project/api/admin.py).
        "api.apikey": ("view", "add", "change"),
        "api.webhookendpoint": ("view", "add", "change"),
        "api.webhookdelivery": ("view",),
    },
}


def _codenames(apps, spec, actions):
    app_label, name = spec.split(".")
    if actions is None:
        return [(app_label, name)]
    if name == "*":
        models = apps.get_app_config(app_label).get_models()
        names = [model._meta.model_name for model in models]
    else:
        names = [name]
    return [(app_label, f"{action}_{model}") for model in names for action in actions]


def sync_role_permissions(apps=global_apps, **kwargs):
    """Create the role groups and give each exactly the permissions listed above."""
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for app_config in global_apps.get_app_configs():
        create_permissions(app_config, verbosity=0)

    for role, table in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        wanted = []
        for spec, actions in table.items():
            for app_label, codename in _codenames(global_apps, spec, actions):
                permission = Permission.objects.filter(
                    content_type__app_label=app_label, codename=codename
                ).first()
                if permission is not None:
                    wanted.append(permission)
        group.permissions.set(wanted)
