"""The site's front door: the home page at / and the favicon browsers ask for."""

from django.conf import settings
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.views.decorators.http import require_safe

from mailings import selfservice
from mailings.views import CSP


@require_safe
def home(request):
    """Show what the list is and the two ways in: join it, or manage your choices."""
    context = {"site_name": settings.SITE_NAME, "interests": selfservice.public_interests()}
    response = render(request, "supporters/home.html", context, using="jinja2")
    response["Content-Security-Policy"] = CSP.format(frame_ancestors="'none'")
    return response


@require_safe
def favicon(request):
    """Send browsers that ask for /favicon.ico (every admin page, uninvited) to the icon."""
    return redirect(static("supporters/favicon.svg"), permanent=True)
