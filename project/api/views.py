"""
The REST API under /api/ (django-ninja): its routes, authentication and errors.

Every call needs an API key (Authorization: Bearer rally_…) and is counted
against the key's rate limit. Calls that read or change supporters are written
to the audit trail (consent changes by crm's services, reads as exports, each
upsert as one "imported" event); the others only count on the key. Routes stay
thin: they check the scope, call a service or a query, and shape the answer.
"""

from django.conf import settings
from django.db.models import F, Q
from django.http import Http404
from django.utils import timezone
from ninja import NinjaAPI, Swagger
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.security import HttpBearer

from crm import services
from crm.exports import partner_opt_ins, partner_supporters
from crm.imports.plan import SKIP_STATUS_REASONS
from crm.models import AuditEvent, CampaignInterest, PartnerConsent, Subscription, Supporter
from crm.services.partner_consent import SHAREABLE_FIELDS
from mailings import reports
from mailings.actions.models import Action
from mailings.actions.models import wording_version as version_of
from mailings.actions.services import SignatureRejected, action_sign
from mailings.models import Mailing
from project.api import keys, schemas
from project.api.exceptions import (
    ApiError,
    ApiForbidden,
    ApiInputError,
    ApiNotFound,
    ApiRateLimited,
)
from project.api.models import ApiKey, Scope
from project.api.upsert import outcome_counts, supporters_upsert


class KeyAuth(HttpBearer):
    """Find the API key of the call, count it, and refuse it once over its rate."""

    openapi_description = "An API key made by staff in the admin: `Authorization: Bearer rally_…`."

    def authenticate(self, request, token):
        key = keys.key_for(token)
        if key is None:
            return None
        if not keys.within_rate(key):
            raise ApiRateLimited(
                f"Too many calls: this key may make {settings.RALLY_API_RATE_LIMIT}.",
                retry_after=keys.retry_after(),
            )
        ApiKey.objects.filter(pk=key.pk).update(
            last_used_at=timezone.now(), call_count=F("call_count") + 1
        )
        return key


api = NinjaAPI(
    title="Rally API",
    version="1",
    description=(
        "Add and update supporters with their consent, read and change their subscriptions, "
        "sign actions and read mailing results. Authentication, scopes, errors, rate limits "
        "and webhooks: docs/api.md."
    ),
    auth=KeyAuth(),
    urls_namespace="api",
    docs=Swagger(settings={"persistAuthorization": False, "tryItOutEnabled": False}),
    docs_url="/docs",
    openapi_url="/openapi.json",
)

ERRORS = {401: schemas.Error, 403: schemas.Error, 422: schemas.Error, 429: schemas.Error}


def _answer(request, status, message, errors=(), **headers):
    response = api.create_response(
        request, {"message": message, "errors": list(errors)}, status=status
    )
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


@api.exception_handler(ApiError)
def _api_error(request, exc):
    headers = {"Retry_After": str(exc.retry_after)} if isinstance(exc, ApiRateLimited) else {}
    return _answer(request, exc.status, exc.message, exc.errors, **headers)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request, exc):
    return _answer(
        request,
        401,
        "Send a valid API key: Authorization: Bearer rally_… (staff create keys in the admin).",
        WWW_Authenticate="Bearer",
    )


@api.exception_handler(NinjaValidationError)
def _invalid(request, exc):
    errors = []
    for error in exc.errors:
        # loc is ("body", "payload", "supporters", 3, "email"): keep what the client wrote.
        path = ""
        for part in error.get("loc", ())[2:]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        message = error.get("msg", "is not valid").removeprefix("Value error, ")
        errors.append({"field": path or "body", "message": message})
    return _answer(
        request, 422, "Nothing was saved: the request is not valid (see errors).", errors
    )


@api.exception_handler(HttpError)
def _http_error(request, exc):
    return _answer(request, exc.status_code, exc.message)


@api.exception_handler(Http404)
def _not_found(request, exc):
    return _answer(request, 404, "Not found.")


def _require(request, scope):
    key = request.auth
    if not key.has_scope(scope):
        raise ApiForbidden(f"This key may not do that: it needs the scope '{scope}'.")
    return key


def _visible(key):
    """Return the supporters `key` may see.

    A partner's key sees whom its sync export carries: those who came from the
    partner, and those whose latest answer to its box on an action page is yes.
    """
    if key.partner_id:
        opted_in = list(partner_opt_ins(key.partner))
        return Supporter.objects.filter(
            Q(pk__in=partner_supporters(key.partner).values("pk")) | Q(pk__in=opted_in)
        )
    return Supporter.objects.all()


def _label(key, source=""):
    label = f"API key {key.name} ({key.prefix})"
    return f"{label}; source: {source}"[:200] if source else label[:200]


def _opted_in_only(supporter, key):
    """Return what a partner's key may see of someone who only opted in to the partner.

    None when the supporter came from the partner, whom its sync file shows as ours do.
    """
    if not key.partner_id or partner_supporters(key.partner).filter(pk=supporter.pk).exists():
        return None
    latest = (
        PartnerConsent.objects.filter(partner_id=key.partner_id, supporter=supporter)
        .order_by("-created_at", "-id")
        .values_list("fields", "created_at")
        .first()
    )
    agreed, when = latest or ([], None)
    shared = {name: str(getattr(supporter, name)) for name in agreed if name in SHAREABLE_FIELDS}
    return {"id": supporter.pk, "email": supporter.email, "opted_in_at": when, **shared}


def _supporter_out(supporter, key):
    data = _opted_in_only(supporter, key) or _in_full(supporter, key)
    services.audit_event_add(
        AuditEvent.Kind.EXPORTED,
        supporter=supporter,
        source=f"api:{key.prefix}",
        via="api",
        what="supporter",
        key=key.name,
        rows=1,
    )
    return data


def _in_full(supporter, key):
    subscriptions = (
        Subscription.objects.filter(supporter=supporter)
        .select_related("interest")
        .order_by("interest__position", "interest__name")
    )
    data = {
        "id": supporter.pk,
        "email": supporter.email,
        "first_name": supporter.first_name,
        "last_name": supporter.last_name,
        "status": supporter.status,
        "suppressed": supporter.is_suppressed(),
        "subscriptions": [
            {
                "interest": subscription.interest.slug,
                "status": subscription.status,
                "since": subscription.subscribed_at
                if subscription.status == Subscription.Status.SUBSCRIBED
                else subscription.unsubscribed_at,
            }
            for subscription in subscriptions
        ],
    }
    if not key.partner_id:
        # A partner sees what its sync export shows; an integration of the charity's own more.
        data.update(
            postcode=supporter.postcode,
            country=str(supporter.country),
            created_at=supporter.created_at,
        )
    return data


def _for_client(outcome, key):
    """Return `outcome` as the client may see it: a partner's key is not told who we hold."""
    data = {name: value for name, value in vars(outcome).items() if name != "values"}
    if key.partner_id and data["outcome"] != "skipped":
        data.update(outcome="accepted", id=None)
    if key.partner_id and data["outcome"] == "skipped":
        data.update(reason="cannot be subscribed", id=None)
    return data


@api.get(
    "/interests",
    response=list[schemas.InterestOut],
    tags=["interests"],
    summary="List the interests",
)
def interests(request):
    """List the campaign's interests (topics supporters subscribe to), in display order."""
    return [
        {"slug": i.slug, "name": i.name, "description": i.description, "public": i.is_public}
        for i in CampaignInterest.objects.all()
    ]


@api.post(
    "/supporters",
    response={200: schemas.UpsertOutcome, **ERRORS},
    tags=["supporters"],
    summary="Add or update a supporter",
)
def supporter_upsert(request, payload: schemas.SupporterIn):
    """Add a supporter or update one found by email; subscribe them with consent evidence.

    Needs `supporters:write`. Never subscribes anyone who unsubscribed or is suppressed.
    """
    key = _require(request, Scope.WRITE_SUPPORTERS)
    (outcome,) = supporters_upsert(rows=[payload], key=key)
    return _for_client(outcome, key)


@api.post(
    "/supporters/batch",
    response={200: schemas.BatchOut, **ERRORS},
    tags=["supporters"],
    summary="Add or update up to 1,000 supporters",
)
def supporters_batch(request, payload: schemas.SupporterBatchIn):
    """Add or update up to 1,000 supporters in one transaction: all are saved, or none.

    Needs `supporters:write`. Errors name each wrong row (`supporters[3].email`).
    """
    key = _require(request, Scope.WRITE_SUPPORTERS)
    outcomes = supporters_upsert(rows=payload.supporters, key=key)
    counts = outcome_counts(outcomes)
    if key.partner_id:
        counts = {
            "accepted": counts["created"] + counts["updated"] + counts["unchanged"],
            "skipped": counts["skipped"],
            "subscriptions": counts["subscriptions"],
        }
    return {"results": [_for_client(outcome, key) for outcome in outcomes], "counts": counts}


@api.post(
    "/supporters/lookup",
    response={200: schemas.SupporterOut, 404: schemas.Error, **ERRORS},
    tags=["supporters"],
    summary="Find a supporter by email",
)
def supporter_lookup(request, payload: schemas.LookupIn):
    """Find a supporter by email address and return their subscriptions.

    Needs `supporters:read`. POST, so the address never sits in a URL or an access log.
    """
    key = _require(request, Scope.READ_SUPPORTERS)
    supporter = _visible(key).with_email(payload.email).first()
    if supporter is None:
        raise ApiNotFound("No supporter with that address (that this key may see).")
    return _supporter_out(supporter, key)


@api.get(
    "/supporters/{int:supporter_id}",
    response={200: schemas.SupporterOut, 404: schemas.Error, **ERRORS},
    tags=["supporters"],
    summary="Read a supporter",
)
def supporter_read(request, supporter_id: int):
    """Return a supporter and their subscriptions. Needs `supporters:read`."""
    key = _require(request, Scope.READ_SUPPORTERS)
    supporter = _visible(key).filter(pk=supporter_id).first()
    if supporter is None:
        raise ApiNotFound("No such supporter (that this key may see).")
    return _supporter_out(supporter, key)


@api.post(
    "/supporters/unsubscribe",
    response={200: schemas.UnsubscribeOut, 404: schemas.Error, **ERRORS},
    tags=["supporters"],
    summary="Unsubscribe a supporter",
)
def supporter_unsubscribe(request, payload: schemas.UnsubscribeIn):
    """Unsubscribe a supporter from some interests, or from all email when none are named.

    Needs `supporters:write`. Recorded in their consent history, naming the key and source.
    """
    key = _require(request, Scope.WRITE_SUPPORTERS)
    topics = list(CampaignInterest.objects.filter(slug__in=payload.interests))
    unknown = sorted(set(payload.interests) - {topic.slug for topic in topics})
    if unknown:
        raise ApiInputError(
            "Nothing was changed: unknown interests.",
            [("interests", f"{slug!r} is not an interest") for slug in unknown],
        )
    supporter = _visible(key).with_email(payload.email).first()
    if supporter is None:
        raise ApiNotFound("No supporter with that address (that this key may see).")
    changed = services.supporter_unsubscribe(
        supporter=supporter,
        interests=topics,
        method="email_link",
        actor_label=_label(key, payload.source),
    )
    supporter.refresh_from_db(fields=["status"])
    return {"id": supporter.pk, "changed": changed, "status": supporter.status}


@api.get(
    "/mailings",
    response={200: list[schemas.MailingOut], **ERRORS},
    tags=["mailings"],
    summary="List sent mailings with their figures",
)
def mailings(request, limit: int = 20):
    """List the latest sent mailings with their figures (counted every few minutes).

    Needs `mailings:read`. At most 100.
    """
    _require(request, Scope.READ_MAILINGS)
    sent = (
        Mailing.objects.filter(status=Mailing.Status.SENT)
        .prefetch_related("interests")
        .order_by("-finished_at", "-id")[: max(1, min(limit, 100))]
    )
    return [_mailing_out(mailing, mailing.stats) for mailing in sent]


@api.get(
    "/mailings/{int:mailing_id}",
    response={200: schemas.MailingOut, 404: schemas.Error, **ERRORS},
    tags=["mailings"],
    summary="Read a mailing's figures",
)
def mailing_read(request, mailing_id: int):
    """Return one sent mailing's figures, counted now. Needs `mailings:read`."""
    _require(request, Scope.READ_MAILINGS)
    mailing = Mailing.objects.filter(pk=mailing_id, status=Mailing.Status.SENT).first()
    if mailing is None:
        raise ApiNotFound("No sent mailing with that id.")
    figures = reports.stats_refresh(mailing)
    return _mailing_out(mailing, figures)


def _mailing_out(mailing, figures):
    return {
        "id": mailing.pk,
        "name": mailing.name,
        "subject": mailing.subject,
        "status": mailing.status,
        "interests": [interest.slug for interest in mailing.interests.all()],
        "sent_at": mailing.finished_at,
        "figures": figures or {},
        "figures_counted_at": mailing.stats_counted_at,
    }


@api.get(
    "/actions",
    response={200: list[schemas.ActionOut], **ERRORS},
    tags=["actions"],
    summary="List the actions (petitions, pledges, event sign-ups)",
)
def actions(request):
    """List open and closed actions with the exact opt-in wordings to show beside a form."""
    published = Action.objects.published().prefetch_related(
        "interests", "cosponsors__partner", "cosponsors__action"
    )
    return [
        {
            "slug": action.slug,
            "title": action.title,
            "kind": action.kind,
            "status": action.status,
            "summary": action.summary,
            "goal": action.goal,
            "signatures": action.signatures.count(),
            "asks": action.asked(),
            "interests": [interest.slug for interest in action.interests.all()],
            "opt_in_wording": action.charity_wording(),
            "opt_in_wording_version": version_of(action.charity_wording()),
            "cosponsors": [
                {
                    "partner": cosponsor.partner.slug,
                    "name": cosponsor.partner.name,
                    "wording": cosponsor.wording,
                    "wording_version": cosponsor.version(),
                    "privacy_url": cosponsor.privacy_url,
                    "shared_fields": cosponsor.fields_shared(),
                }
                for cosponsor in action.cosponsors.all()
            ],
        }
        for action in published.order_by("-created_at")
    ]


@api.post(
    "/actions/{slug}/sign",
    response={200: schemas.SignOut, 404: schemas.Error, **ERRORS},
    tags=["actions"],
    summary="Sign an action for someone",
)
def action_sign_route(request, slug: str, payload: schemas.SignIn):
    """Sign an action for the person at `email`, as its page would. Needs `actions:sign`.

    A signature counts once per person. The boxes ticked are recorded as their
    consent only after the emailed confirmation (when the site asks for one), and
    never for an address that may not be emailed. A partner's key signs as that
    partner (the signature's source).
    """
    key = _require(request, Scope.SIGN_ACTIONS)
    action = Action.objects.filter(slug=slug).first()
    if action is None:
        raise ApiNotFound("No action with that slug (GET /api/actions lists them).")
    opt_in = payload.opt_in
    if opt_in and not settings.RALLY_ACTIONS_DOUBLE_OPT_IN and _said_no(payload.email, action):
        # Nobody confirms by email here, so the integration's word would be the only
        # "yes": someone who said no to us is not subscribed again on it (as imports).
        opt_in = False
    try:
        signature = action_sign(
            action=action,
            email=payload.email,
            first_name=payload.first_name,
            last_name=payload.last_name,
            postcode=payload.postcode,
            country=payload.country,
            phone=payload.phone,
            opt_in=opt_in,
            partner_opt_ins=payload.partner_opt_ins,
            source=key.partner.slug if key.partner_id else (payload.source or f"api:{key.prefix}"),
            page_url=payload.page_url,
            wording_version=payload.opt_in_wording_version or None,
        )
    except SignatureRejected as rejection:
        raise ApiInputError(f"Nothing was saved: {rejection.messages[0]}") from None
    return {"counted": signature.counted, "confirmation": signature.confirmation}


def _said_no(email, action):
    """Whether the person at `email` left all email or one of `action`'s interests, or
    cannot be emailed: the import's rules for who is never subscribed again."""
    supporter = services.supporter_get(email)
    if supporter is None:
        return False
    if supporter.status in SKIP_STATUS_REASONS or supporter.is_suppressed():
        return True
    return Subscription.objects.filter(
        supporter=supporter,
        interest__in=action.interests.all(),
        status=Subscription.Status.UNSUBSCRIBED,
    ).exists()
