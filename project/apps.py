from axes.apps import AppConfig as AxesConfig
from django.contrib.admin.apps import AdminConfig
from django_otp.plugins.otp_totp.apps import DefaultConfig as TOTPConfig


class RallyAdminConfig(AdminConfig):
    """django.contrib.admin, with the staff login's two-factor step (project.staff_login)."""

    default_site = "project.staff_login.RallyAdminSite"


class LoginLockoutConfig(AxesConfig):
    """django-axes, named in the admin for what staff look for there."""

    verbose_name = "Login lockouts"


class TwoFactorDevicesConfig(TOTPConfig):
    """django-otp's authenticator-app devices, named in the admin for what they are."""

    verbose_name = "Two-factor login"
