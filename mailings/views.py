"""
Public pages: sign-up, the preference centre, one-click unsubscribe and the
links that lead to them (see docs/self-service.md).

Mail scanners and link previews fetch every URL in an email, so GET never
changes anything: it shows a page or a button, and POST does the work. A
bad, expired or revoked link gets the same friendly page, which offers a fresh
link and never says whether an address is known.
"""

import json

from django.conf import settings
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from crm.services import ConsentRefused, supporter_export_data
from mailings import ratelimit, selfservice, tasks, tokens
from mailings.composer import public as newsletters
from mailings.exceptions import SignupRefused
from mailings.forms import LinkRequestForm, PreferencesForm, SignupForm
from mailings.models import Mailing

# No scripts, fonts or anything else from elsewhere: the pages use their own
# stylesheet and nothing more.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "base-uri 'none'; frame-ancestors {frame_ancestors}"
)


def _page(request, template, context=None, *, status=200, frame_ancestors="'none'"):
    context = {"site_name": settings.SITE_NAME, **(context or {})}
    response = render(request, f"supporters/{template}", context, status=status, using="jinja2")
    response["Content-Security-Policy"] = CSP.format(frame_ancestors=frame_ancestors)
    # Personal pages: never kept by a shared cache or the browser's history cache.
    add_never_cache_headers(response)
    return response


def _link_invalid(request, kind="link"):
    return _page(
        request,
        "link_invalid.html",
        {"kind": kind, "form": LinkRequestForm()},
        status=404,
    )


def _preferences_context(supporter, token, form=None, **extra):
    interests = selfservice.interests_with_choices(supporter=supporter)
    if form is None:
        form = PreferencesForm(
            initial={
                "first_name": supporter.first_name,
                "last_name": supporter.last_name,
                "postcode": supporter.postcode,
            }
        )
    if form.is_bound:
        chosen = set(form.data.getlist("interests"))
    else:
        chosen = {interest.slug for interest in interests if interest.subscribed}
    return {
        "supporter": supporter,
        "token": token,
        "form": form,
        "interests": interests,
        "chosen": chosen,
        "wording": selfservice.wording("preferences")[0],
        "unsubscribed_all": supporter.status == supporter.Status.UNSUBSCRIBED,
        **extra,
    }


# Sign-up ---------------------------------------------------------------------


# The form is embedded in the charity's own site, where a cross-site frame
# gets no cookies, so it cannot carry a CSRF token. It needs none: posting it
# changes nothing, it only queues a confirmation email to the address given,
# exactly what anyone can do by filling it in.
@csrf_exempt
@xframe_options_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def signup(request):
    """The public sign-up form (/join/), embeddable in a frame."""
    frame_ancestors = " ".join(settings.RALLY_SIGNUP_FRAME_ANCESTORS) or "'none'"
    form = SignupForm(request.POST if request.method == "POST" else None)
    context = {
        "form": form,
        "wording": selfservice.wording("signup")[0],
        "interests": list(form.fields["interests"].queryset),
        "chosen": set(form.data.getlist("interests")) if form.is_bound else set(),
        "has_archive": newsletters.has_archive(),
    }
    if request.method == "POST":
        within_ip_limit = ratelimit.allow_ip(request, "signup")
        if form.is_valid():
            data = form.cleaned_data
            # Every outcome below gives the same answer, so the form cannot be
            # used to learn whether an address is known or suppressed, nor
            # whether a limit was reached (which would tell whoever floods it
            # when to move to another network).
            if (
                within_ip_limit
                and not form.is_robot()
                and ratelimit.allow_address(data["email"], "signup")
                and ratelimit.allow_notice("sign-up")
            ):
                pending = selfservice.signup_pending(
                    email=data["email"],
                    first_name=data["first_name"],
                    last_name=data["last_name"],
                    postcode=data["postcode"],
                    interests=data["interests"],
                    ip_address=ratelimit.client_ip(request),
                )
                tasks.send_signup_confirmation.delay(tokens.make_signup_token(pending))
            return _page(
                request,
                "signup_sent.html",
                {
                    "email": data["email"],
                    "max_age_days": settings.RALLY_SIGNUP_CONFIRM_MAX_AGE // 86400,
                },
                frame_ancestors=frame_ancestors,
            )
    return _page(request, "signup.html", context, frame_ancestors=frame_ancestors)


@require_http_methods(["GET", "HEAD", "POST"])
def signup_confirm(request, token):
    """The link in the confirmation email: GET asks, POST subscribes."""
    signup = tokens.read_signup_token(token)
    if signup is None:
        return _link_invalid(request, kind="signup")
    interests = list(selfservice.public_interests().filter(pk__in=signup.interest_ids))
    if request.method != "POST":
        return _page(
            request,
            "signup_confirm.html",
            {"email": signup.email, "interests": interests, "wording": signup.wording},
        )
    try:
        result = selfservice.signup_confirm(signup=signup)
    except SignupRefused:
        return _page(request, "signup_refused.html", status=409)
    return _page(
        request,
        "signup_done.html",
        {
            "result": result,
            "preferences_path": reverse(
                "preferences", args=[tokens.make_preferences_token(result.supporter)]
            ),
        },
    )


# "Email me my link" ------------------------------------------------------------


@require_http_methods(["GET", "HEAD", "POST"])
def link_request(request):
    """/preferences/: send a fresh preference link to an address, if we know it."""
    form = LinkRequestForm(request.POST if request.method == "POST" else None)
    if request.method == "POST":
        within_ip_limit = ratelimit.allow_ip(request, "link")
        if form.is_valid():
            email = form.cleaned_data["email"]
            # The same work and the same answer whether or not the address is
            # known (the task looks it up, so even timing gives nothing away)
            # and whether or not a limit was reached.
            if (
                within_ip_limit
                and ratelimit.allow_address(email, "link")
                and ratelimit.allow_notice("link")
            ):
                tasks.send_preferences_link.delay(tokens.make_link_request_token(email))
            return _page(request, "link_request_sent.html", {"email": email})
    return _page(request, "link_request.html", {"form": form})


# Preference centre ----------------------------------------------------------------


@require_http_methods(["GET", "HEAD", "POST"])
def preferences(request, token):
    """The preference centre: choose topics, correct details (/preferences/<token>/)."""
    supporter = tokens.read_preferences_token(token)
    if supporter is None:
        return _link_invalid(request)
    if request.method != "POST":
        return _page(request, "preferences.html", _preferences_context(supporter, token))
    form = PreferencesForm(request.POST)
    if not form.is_valid():
        return _page(request, "preferences.html", _preferences_context(supporter, token, form))
    data = form.cleaned_data
    changes = selfservice.preferences_save(
        supporter=supporter,
        interests=data["interests"],
        first_name=data["first_name"],
        last_name=data["last_name"],
        postcode=data["postcode"],
    )
    supporter.refresh_from_db()
    return _page(
        request,
        "preferences.html",
        _preferences_context(supporter, token, changes=changes, saved=True),
    )


@require_http_methods(["GET", "HEAD", "POST"])
def preferences_unsubscribe_all(request, token):
    """Unsubscribe from all email: GET asks for confirmation, POST does it."""
    supporter = tokens.read_preferences_token(token)
    if supporter is None:
        return _link_invalid(request)
    if request.method != "POST":
        return _page(request, "unsubscribe_all_confirm.html", {"token": token})
    had = selfservice.preferences_unsubscribe_all(supporter=supporter)
    return _page(request, "unsubscribed_all.html", {"token": token, "had": had})


@require_http_methods(["POST"])
def preferences_resubscribe(request, token):
    """Undo an unsubscribe-all: subscribe again, writing new consent."""
    supporter = tokens.read_preferences_token(token)
    if supporter is None:
        return _link_invalid(request)
    try:
        restored = selfservice.preferences_resubscribe(
            supporter=supporter, interest_ids=request.POST.getlist("interest")
        )
    except ConsentRefused:
        return _page(
            request,
            "preferences.html",
            _preferences_context(supporter, token, resubscribe_refused=True),
        )
    supporter.refresh_from_db()
    return _page(
        request,
        "preferences.html",
        _preferences_context(supporter, token, resubscribed=True, restored=restored),
    )


@require_http_methods(["POST"])
def preferences_data(request, token):
    """Email the supporter a link to download their data (never an instant download)."""
    supporter = tokens.read_preferences_token(token)
    if supporter is None:
        return _link_invalid(request)
    if ratelimit.allow_address(supporter.email, "data") and ratelimit.allow_notice("data"):
        tasks.send_data_download.delay(supporter.pk)
    return _page(
        request,
        "preferences.html",
        _preferences_context(
            supporter,
            token,
            data_requested=True,
            max_age_hours=settings.RALLY_DATA_LINK_MAX_AGE // 3600,
        ),
    )


@require_http_methods(["GET", "HEAD", "POST"])
def data_download(request, token):
    """The emailed "download my data" link: GET shows a button, POST downloads."""
    supporter = tokens.read_data_download_token(token)
    if supporter is None:
        return _link_invalid(request, kind="data")
    if request.method != "POST":
        return _page(request, "data_download.html", {"token": token})
    data = supporter_export_data(supporter=supporter, source="supporter (emailed link)")
    response = HttpResponse(
        json.dumps(data, indent=2, ensure_ascii=False), content_type="application/json"
    )
    response["Content-Disposition"] = 'attachment; filename="my-data.json"'
    add_never_cache_headers(response)
    return response


# One-click unsubscribe (RFC 8058) ------------------------------------------------------


# RFC 8058: mailbox providers POST "List-Unsubscribe=One-Click" to this URL
# with no cookies and no CSRF token; the signed token is the authority.
@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def unsubscribe(request, token):
    """The List-Unsubscribe URL: GET shows one button, POST unsubscribes at once."""
    supporter, mailing_id = tokens.read_unsubscribe_token(token)
    if supporter is None:
        return _link_invalid(request)
    preferences_path = reverse("preferences", args=[tokens.make_preferences_token(supporter)])
    if request.method == "POST":
        if request.POST.get("scope") == "all":
            mailing = Mailing.objects.filter(pk=mailing_id).first() if mailing_id else None
            selfservice.preferences_unsubscribe_all(supporter=supporter, mailing=mailing)
            interests = []
        else:
            interests = selfservice.one_click_unsubscribe(
                supporter=supporter, mailing_id=mailing_id
            )
        return _page(
            request,
            "unsubscribed.html",
            {"token": token, "interests": interests, "preferences_path": preferences_path},
        )
    interests = (
        selfservice.interests_with_choices(supporter=supporter, mailing_id=mailing_id)
        if mailing_id is not None
        else []
    )
    if not interests:
        # A mailing sent for no particular topic: the supporter chooses what to
        # leave in the preference centre.
        return redirect(preferences_path)
    return _page(
        request,
        "unsubscribe.html",
        {"token": token, "interests": interests, "preferences_path": preferences_path},
    )
