"""
Public action pages: /act/<slug>/ (the page), /act/<slug>/embed/ (the same,
made to be framed by co-sponsors' sites) and /act/confirm/<token>/ (the link
that confirms the opt-ins made when signing). See docs/actions.md.

A page is read far more often than it is signed, in bursts when a partner
mails its list: each web process keeps the action, its rendered page and its
count in memory for RALLY_ACTION_CACHE_SECONDS, so an edit or a signature
shows within seconds, a burst of readers costs one render per process, and a
read costs no round trip to the database or to Redis (docs/performance.md,
"Action pages").
"""

import re
import threading
import time
from urllib.parse import quote

from django.conf import settings
from django.core.cache import cache
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.cache import add_never_cache_headers, patch_cache_control
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods
from markupsafe import Markup

from mailings import ratelimit
from mailings.actions import services, tokens
from mailings.actions.forms import LABELS, SignForm, country_choices
from mailings.actions.models import Action, Signature, wording_version

# As the /join/ pages: no scripts, fonts or anything else from elsewhere.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "base-uri 'none'; frame-ancestors {frame_ancestors}"
)
# ?source= values kept as given (campaign codes, partner slugs); anything else is dropped.
SOURCE = re.compile(r"[A-Za-z0-9_.-]{1,60}")


def _respond(request, template, context, *, status=200, frame_ancestors="'none'"):
    context = {"site_name": settings.SITE_NAME, **context}
    response = render(request, f"actions/{template}", context, status=status, using="jinja2")
    response["Content-Security-Policy"] = CSP.format(frame_ancestors=frame_ancestors)
    return response


class _Memo:
    """What this process read lately, each kept for RALLY_ACTION_CACHE_SECONDS.

    Per process, not shared: a handful of entries per action (its page per
    ?source=), bounded so made-up sources cannot fill memory.
    """

    LIMIT = 1_000

    def __init__(self):
        self.entries = {}
        self.lock = threading.Lock()

    def get(self, key):
        entry = self.entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def set(self, key, value):
        with self.lock:
            if len(self.entries) >= self.LIMIT:
                self.entries.clear()
            self.entries[key] = (time.monotonic() + settings.RALLY_ACTION_CACHE_SECONDS, value)

    def clear(self):
        self.entries.clear()


memo = _Memo()


def _action(slug) -> Action:
    """Return the published action at `slug`, with its co-sponsors (kept a few seconds)."""
    key = f"actions:action:{slug}"
    action = memo.get(key)
    if action is None:
        action = (
            Action.objects.published()
            .prefetch_related("interests", "cosponsors__partner")
            .filter(slug=slug)
            .first()
        )
        if action is None:
            raise Http404("No such action.")
        action.cosponsors_list = list(action.cosponsors.all())
        action.interests_list = list(action.interests.all())
        memo.set(key, action)
    return action


def signature_count(action) -> int:
    """Return how many have signed, counted at most once per RALLY_ACTION_CACHE_SECONDS.

    Counting rows (not a counter column) keeps signers from queueing on one
    row; the count is shared through the cache, so processes agree.
    """
    key = f"actions:count:{action.pk}"
    count = memo.get(key)
    if count is None:
        count = cache.get(key)
        if count is None:
            count = Signature.objects.filter(action=action).count()
            cache.set(key, count, settings.RALLY_ACTION_CACHE_SECONDS)
        memo.set(key, count)
    return count


def _frame_ancestors(action) -> str:
    origins = sorted({origin for c in action.cosponsors_list for origin in c.origins()})
    return " ".join(origins) or "'none'"


def _text(action) -> Markup:
    from mailings.composer.render import blocks_to_web_html

    return Markup(blocks_to_web_html(action.blocks or []))  # noqa: S704 (sanitised by the composer)


def _page_url(request, action, embed):
    name = "action-embed" if embed else "action"
    return request.build_absolute_uri(reverse(name, args=[action.slug]))


def _share_links(action, url):
    text = quote(action.title)
    link = quote(url, safe="")
    return [
        ("Email", f"mailto:?subject={text}&body={text}%0A%0A{link}"),
        ("WhatsApp", f"https://wa.me/?text={text}%20{link}"),
        ("Facebook", f"https://www.facebook.com/sharer/sharer.php?u={link}"),
        ("X (Twitter)", f"https://x.com/intent/post?text={text}&url={link}"),
        ("Bluesky", f"https://bsky.app/intent/compose?text={text}%20{link}"),
    ]


def _context(request, action, *, form, embed, source):
    count = signature_count(action)
    return {
        "action": action,
        "text": _text(action),
        "form": form,
        "labels": LABELS,
        "country_choices": country_choices() if "country" in action.asked() else [],
        "asked": action.asked(),
        "count": count,
        "goal": action.goal,
        "percent": min(100, round(100 * count / action.goal)) if action.goal else 100,
        "cosponsors": action.cosponsors_list,
        "offers_opt_in": bool(action.interests_list),
        "charity_wording": action.charity_wording(),
        "wording_version": wording_version(action.charity_wording()),
        "chosen_partners": set(form.data.getlist("partners")) if form.is_bound else set(),
        "embed": embed,
        "source": source,
        "form_url": reverse("action-embed" if embed else "action", args=[action.slug]),
    }


def _show(request, action, *, embed, source):
    """The page with an empty form: one render per slug, source and cache period."""
    key = f"actions:page:{action.slug}:{int(embed)}:{source}"
    body = memo.get(key)
    if body is None:
        form = SignForm(action=action, initial={"source": source})
        context = _context(request, action, form=form, embed=embed, source=source)
        body = render_to_string(
            "actions/action.html",
            {"site_name": settings.SITE_NAME, **context},
            request=request,
            using="jinja2",
        )
        memo.set(key, body)
    response = HttpResponse(body)
    frame_ancestors = _frame_ancestors(action) if embed else "'none'"
    response["Content-Security-Policy"] = CSP.format(frame_ancestors=frame_ancestors)
    # Shared caches may keep it as long as Rally does; it holds nobody's data.
    patch_cache_control(response, public=True, max_age=settings.RALLY_ACTION_CACHE_SECONDS)
    return response


def _sign(request, action, *, embed):
    frame_ancestors = _frame_ancestors(action) if embed else "'none'"
    url = _page_url(request, action, embed=False)  # the one to share, framed or not
    form = SignForm(request.POST, action=action)
    source = request.POST.get("source", "")
    source = source if SOURCE.fullmatch(source) else ""
    if not ratelimit.hit(
        "action:ip",
        ratelimit.client_network(ratelimit.client_ip(request)),
        settings.RALLY_ACTION_RATE_LIMIT_PER_IP,
    ):
        response = _respond(
            request, "busy.html", {"action": action}, status=429, frame_ancestors=frame_ancestors
        )
        response["Retry-After"] = "600"
        add_never_cache_headers(response)
        return response
    signature = None
    if form.is_valid() and not form.is_robot():
        data = form.cleaned_data
        try:
            signature = services.action_sign(
                action=action,
                email=data["email"],
                first_name=data.get("first_name", ""),
                last_name=data.get("last_name", ""),
                postcode=data.get("postcode", ""),
                country=data.get("country", ""),
                phone=data.get("phone", ""),
                opt_in=data["opt_in"],
                partner_opt_ins=data["partners"],
                source=source,
                ip=ratelimit.client_ip(request),
                page_url=_page_url(request, action, embed) if embed else url,
                wording_version=data["wording_version"] or None,
            )
        except services.SignatureRejected as error:
            if "cannot sign" not in error.message:
                form.add_error(None, error.message)
            # An address that cannot sign gets the same thanks as any other,
            # so the form never tells whether an address was erased.
    if form.errors:
        context = _context(request, action, form=form, embed=embed, source=source)
        response = _respond(request, "action.html", context, frame_ancestors=frame_ancestors)
        add_never_cache_headers(response)
        return response
    response = _respond(
        request,
        "thanks.html",
        {
            "action": action,
            "signature": signature,
            "pending": signature is not None
            and signature.confirmation == Signature.Confirmation.PENDING,
            "share_links": _share_links(action, url),
            "share_url": url,
            "embed": embed,
            "max_age_days": settings.RALLY_SIGNUP_CONFIRM_MAX_AGE // 86400,
        },
        frame_ancestors=frame_ancestors,
    )
    add_never_cache_headers(response)
    return response


# Partners' sites post the plain HTML form here from their own pages, and a
# framed page gets no cookies, so neither can carry a CSRF token. Neither
# needs one: signing records only what the form says, exactly what anyone can
# do by filling it in, and opt-ins wait for the emailed confirmation.
@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def action_page(request, slug):
    """The action's public page: its text, the count, the form; POST signs."""
    action = _action(slug)
    if request.method == "POST":
        return _sign(request, action, embed=False)
    source = request.GET.get("source", "")
    return _show(request, action, embed=False, source=source if SOURCE.fullmatch(source) else "")


@csrf_exempt
@xframe_options_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def action_embed(request, slug):
    """The page made to be framed by the co-sponsors' listed sites (CSP frame-ancestors)."""
    action = _action(slug)
    if request.method == "POST":
        return _sign(request, action, embed=True)
    source = request.GET.get("source", "")
    return _show(request, action, embed=True, source=source if SOURCE.fullmatch(source) else "")


@require_http_methods(["GET", "HEAD", "POST"])
def action_confirm(request, token):
    """The link in the confirmation email: GET asks, POST records the opt-ins."""
    signature = tokens.read_confirm_token(token)
    if signature is None:
        response = _respond(request, "confirm_invalid.html", {}, status=404)
        add_never_cache_headers(response)
        return response
    if request.method == "POST":
        signature = services.action_signature_confirm(signature=signature)
        template = "confirmed.html"
    else:
        template = "confirm.html"
    partners = [
        c.partner
        for c in signature.action.cosponsors.select_related("partner")
        if c.partner_id in {choice["partner"] for choice in signature.partner_choices}
    ]
    response = _respond(
        request,
        template,
        {
            "action": signature.action,
            "signature": signature,
            "interests": list(signature.action.interests.all()),
            "partners": partners,
            "token": token,
        },
    )
    add_never_cache_headers(response)
    return response
