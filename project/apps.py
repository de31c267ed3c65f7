from django.contrib.admin.apps import AdminConfig


class RallyAdminConfig(AdminConfig):
    """django.contrib.admin, with the staff login's two-factor step (project.staff_login)."""

    default_site = "project.staff_login.RallyAdminSite"
