"""
The staff login: password (locked out after repeated failures by django-axes),
then, for the staff RALLY_STAFF_2FA names, a code from an authenticator app
(TOTP, django-otp). See docs/security.md.

A staff member who must use a code but has no device yet enrols on the same
page: it shows a QR code to scan and asks for the first code, which confirms
the device. Until then no admin page opens: RallyAdminSite.has_permission
requires a verified session, and its login page sends such a user here.
"""

import base64

import qrcode
import qrcode.image.svg
from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import logout
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django_otp import login as otp_login
from django_otp import verify_token
from django_otp.plugins.otp_totp.models import TOTPDevice


def two_factor_required(user) -> bool:
    """Return whether `user` must give a code from their authenticator app to use the admin."""
    mode = settings.RALLY_STAFF_2FA
    if mode == "staff":
        return user.is_staff
    if mode == "superusers":
        return user.is_superuser
    return False


def _verified(request) -> bool:
    user = request.user
    return not two_factor_required(user) or (hasattr(user, "is_verified") and user.is_verified())


class TokenForm(forms.Form):
    token = forms.CharField(
        label="6-digit code",
        max_length=8,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}
        ),
    )


class RallyAdminSite(admin.AdminSite):
    """Django's admin site, opened only to sessions that passed the second factor if needed."""

    def has_permission(self, request):
        return super().has_permission(request) and _verified(request)

    def index(self, request, extra_context=None):
        """The admin home: the dashboard (project.dashboard), beside the list of apps."""
        # Imported here: this module loads with the admin, before the models.
        from project import dashboard

        context = {"dashboard": dashboard.page_context(request), **(extra_context or {})}
        return super().index(request, context)

    @method_decorator(never_cache)
    def login(self, request, extra_context=None):
        user = request.user
        if user.is_active and user.is_staff and not _verified(request):
            return redirect(self._after_password(request, request.GET.get("next", "")))
        response = super().login(request, extra_context)
        if request.method == "POST" and request.user.is_authenticated and not _verified(request):
            # The password was right; the code comes next, on its own page.
            return redirect(self._after_password(request, request.POST.get("next", "")))
        return response

    def _after_password(self, request, next_url):
        url = reverse("admin:two_factor", current_app=self.name)
        return f"{url}?next={next_url}" if self._safe(request, next_url) else url

    def _safe(self, request, next_url):
        return bool(next_url) and url_has_allowed_host_and_scheme(
            next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        )

    def get_urls(self):
        return [
            path("two-factor/", self.two_factor_view, name="two_factor"),
            *super().get_urls(),
        ]

    @method_decorator(never_cache)
    @method_decorator(csrf_protect)
    def two_factor_view(self, request):
        """Ask for a code from the user's authenticator app, enrolling one first if need be."""
        user = request.user
        next_url = request.POST.get("next") or request.GET.get("next", "")
        index = reverse("admin:index", current_app=self.name)
        if not (user.is_active and user.is_staff):
            return redirect("admin:login")
        if request.method == "POST" and "log_out" in request.POST:
            logout(request)
            return redirect("admin:login")
        if _verified(request):
            return redirect(next_url if self._safe(request, next_url) else index)

        devices = list(TOTPDevice.objects.devices_for_user(user, confirmed=True).order_by("pk"))
        enrolling = not devices
        if enrolling:
            # One unconfirmed device per user, kept until its first code confirms
            # it, so reloading the page shows the same QR code.
            device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
            if device is None:
                device = TOTPDevice.objects.create(
                    user=user, name="Authenticator app", confirmed=False
                )
            devices = [device]

        form = TokenForm(request.POST or None)
        if form.is_valid():
            token = form.cleaned_data["token"].replace(" ", "")
            for device in devices:
                # verify_token locks the device row and counts failures: after
                # each wrong code the next is refused for longer (django-otp).
                if verify_token(user, device.persistent_id, token):
                    if enrolling:
                        TOTPDevice.objects.filter(pk=device.pk).update(confirmed=True)
                        device.confirmed = True
                    otp_login(request, device)
                    return redirect(next_url if self._safe(request, next_url) else index)
            form.add_error(
                "token",
                "That code is not right. Type the 6 digits your app shows now; "
                "after several wrong codes, wait a little before the next try.",
            )
        context = {
            **self.each_context(request),
            "title": "Set up two-factor login" if enrolling else "Two-factor login",
            "form": form,
            "next": next_url if self._safe(request, next_url) else "",
            "enrolling": enrolling,
        }
        if enrolling:
            device = devices[0]
            context["qr_data_uri"] = _qr_data_uri(device.config_url)
            context["secret"] = base64.b32encode(device.bin_key).decode()
        return render(request, "admin/two_factor.html", context)


def _qr_data_uri(text):
    """Return `text` as a QR code in an SVG data: URI, for an <img> the CSP allows."""
    svg = qrcode.make(text, image_factory=qrcode.image.svg.SvgPathImage).to_string()
    return "data:image/svg+xml;base64," + base64.b64encode(svg).decode()


def lockout_response(request, original_response=None, credentials=None):
    """The admin's page for a login django-axes refuses (AXES_LOCKOUT_CALLABLE)."""
    from axes.helpers import get_client_username

    context = {
        "username": get_client_username(request, credentials) or "",
        "failure_limit": settings.RALLY_LOGIN_FAILURE_LIMIT,
        "minutes": settings.RALLY_LOGIN_COOLOFF_MINUTES,
        "site_header": admin.site.site_header,
        "site_title": admin.site.site_title,
    }
    return render(request, "admin/locked_out.html", context, status=429)
