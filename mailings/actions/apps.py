"""Action pages (petitions, pledges, event sign-ups) at /act/<slug>/, with coalition opt-ins."""

from django.apps import AppConfig


class ActionsConfig(AppConfig):
    name = "mailings.actions"
    label = "actions"
    verbose_name = "Actions"

    def ready(self):
        from crm import extensions
        from mailings.actions import hooks

        extensions.register_erasure(hooks.erase_signatures)
        extensions.register_data_export(hooks.export_signatures)
        extensions.register_timeline(hooks.timeline)
