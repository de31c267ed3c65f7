from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CrmConfig(AppConfig):
    name = "crm"
    verbose_name = "Supporters"

    def ready(self):
        from crm import roles

        post_migrate.connect(
            roles.sync_role_permissions, sender=self, dispatch_uid="crm.sync_roles"
        )
