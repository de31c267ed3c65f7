"""What the API accepts and returns (pydantic, through django-ninja), checked before any write."""

import datetime
import functools

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.utils import timezone
from django_countries import countries
from ninja import Field, Schema
from pydantic import BaseModel, field_validator, model_validator

from crm.models import ConsentRecord

# Ways of agreeing an API client may report. The others are Rally's own
# (one-click unsubscribe, ESP webhooks, staff, imports) and never come from outside.
CONSENT_METHODS = ("signup_form", "email_link", "action_page")
BATCH_MAX = 1000


@functools.cache
def _known_methods():
    return [method for method in CONSENT_METHODS if method in ConsentRecord.Method.values]


class Message(Schema):
    message: str


class FieldError(Schema):
    field: str = Field(description='Where the error is: "supporters[3].email", "email".')
    message: str


class Error(Schema):
    message: str
    errors: list[FieldError] = []


# Inputs are plain pydantic models: ninja's Schema adds a validator per object
# (to read Django models), which a batch of 1,000 pays for 3,000 times.
class Consent(BaseModel):
    """How and when the supporter agreed: required for any subscription."""

    wording: str = Field(
        min_length=1, max_length=5000, description="The exact words the supporter agreed to."
    )
    wording_version: str = Field("", max_length=32)
    method: str = Field(description="How they agreed: " + ", ".join(CONSENT_METHODS) + ".")
    source: str = Field(
        min_length=1,
        max_length=100,
        description='Where they agreed: a form or page of yours ("aegis-petition-2026").',
    )
    given_at: datetime.datetime = Field(description="When they agreed (ISO 8601 with a time zone).")

    @field_validator("method")
    @classmethod
    def _known_method(cls, value):
        if value not in _known_methods():
            raise ValueError(f"must be one of {', '.join(_known_methods())}")
        return value

    @field_validator("given_at")
    @classmethod
    def _in_the_past(cls, value):
        if value.tzinfo is None:
            raise ValueError("needs a time zone (2026-12-01T10:00:00Z)")
        if value > timezone.now() + datetime.timedelta(minutes=5):
            raise ValueError("is in the future")
        return value


class SupporterIn(BaseModel):
    """One supporter to add or update, found by email address (case aside)."""

    email: str = Field(max_length=254)
    first_name: str | None = Field(None, max_length=100)
    last_name: str | None = Field(None, max_length=100)
    postcode: str | None = Field(None, max_length=16)
    country: str | None = Field(None, description="Two-letter code: GB, FR.")
    phone: str | None = Field(None, max_length=32)
    organisation: str | None = Field(None, max_length=200)
    interests: list[str] = Field([], description="Slugs of the interests to subscribe to.")
    consent: Consent | None = None

    @field_validator("email")
    @classmethod
    def _valid_email(cls, value):
        value = value.strip()
        try:
            validate_email(value)
        except DjangoValidationError:
            raise ValueError("is not a valid email address") from None
        return value

    @field_validator("country")
    @classmethod
    def _known_country(cls, value):
        if value is None or value == "":
            return value
        code = value.strip().upper()
        if code not in dict(countries):
            raise ValueError("is not a two-letter country code (GB, FR)")
        return code

    @field_validator("first_name", "last_name", "postcode", "phone", "organisation")
    @classmethod
    def _trimmed(cls, value):
        return value.strip() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consent_for_interests(self):
        if self.interests and self.consent is None:
            raise ValueError(
                "consent is required to subscribe: wording, method, source and given_at"
            )
        return self


class SupporterBatchIn(BaseModel):
    supporters: list[SupporterIn] = Field(min_length=1, max_length=BATCH_MAX)


class UpsertOutcome(Schema):
    index: int = Field(description="The supporter's position in the request, from 0.")
    id: int | None = None
    outcome: str = Field(
        description="created, updated, unchanged or skipped (a partner's key: accepted or skipped)."
    )
    reason: str = ""
    subscribed: list[str] = []
    not_subscribed: dict[str, str] = Field({}, description="Interest slug -> why not.")


class BatchOut(Schema):
    results: list[UpsertOutcome]
    counts: dict[str, int]


class SubscriptionOut(Schema):
    interest: str
    status: str
    since: datetime.datetime | None


class SupporterOut(Schema):
    """A supporter as a key may see them.

    A partner's key sees someone who only opted in to the partner on an action
    page as its sync file does: the address, the fields they agreed to share and
    when they opted in (`opted_in_at`), nothing of ours (no status, no topics).
    """

    id: int
    email: str
    first_name: str | None = None
    last_name: str | None = None
    status: str | None = None
    suppressed: bool | None = None
    postcode: str | None = None
    country: str | None = None
    phone: str | None = None
    created_at: datetime.datetime | None = None
    opted_in_at: datetime.datetime | None = None
    subscriptions: list[SubscriptionOut] | None = None


class LookupIn(Schema):
    email: str = Field(max_length=254)


class UnsubscribeIn(Schema):
    email: str = Field(max_length=254)
    interests: list[str] = Field(
        [], description="Slugs to leave; none means every email from us (unsubscribe from all)."
    )
    source: str = Field(min_length=1, max_length=100, description="Where they asked.")


class UnsubscribeOut(Schema):
    id: int
    changed: bool
    status: str


class InterestOut(Schema):
    slug: str
    name: str
    description: str
    public: bool


class MailingOut(Schema):
    id: int
    name: str
    subject: str
    status: str
    interests: list[str]
    sent_at: datetime.datetime | None
    figures: dict
    figures_counted_at: datetime.datetime | None


class CosponsorOut(Schema):
    partner: str
    name: str
    wording: str
    wording_version: str
    privacy_url: str
    shared_fields: list[str]


class ActionOut(Schema):
    slug: str
    title: str
    kind: str
    status: str
    summary: str
    goal: int
    signatures: int
    asks: list[str] = Field(description="The supporter fields the action's form asks for.")
    interests: list[str]
    opt_in_wording: str
    opt_in_wording_version: str
    cosponsors: list[CosponsorOut]


class SignIn(Schema):
    """A signature, with the boxes the signer ticked beside the wording you showed them."""

    email: str = Field(max_length=254)
    first_name: str = Field("", max_length=100)
    last_name: str = Field("", max_length=100)
    postcode: str = Field("", max_length=16)
    country: str = Field("", max_length=2)
    phone: str = Field("", max_length=32)
    opt_in: bool = Field(False, description="Ticked the box to hear from us (opt_in_wording).")
    opt_in_wording_version: str = Field(
        "", max_length=64, description="The version of the wording shown; required with opt_in."
    )
    partner_opt_ins: list[str] = Field(
        [], description="Slugs of the co-sponsors whose boxes were ticked."
    )
    source: str = Field("", max_length=100, description="Where they signed: a page or campaign.")
    page_url: str = Field("", max_length=500)

    @model_validator(mode="after")
    def _evidence_for_opt_in(self):
        if self.opt_in and not self.opt_in_wording_version:
            raise ValueError(
                "opt_in_wording_version is required with opt_in: send the version of the "
                "wording you showed (GET /api/actions lists it)"
            )
        return self


class SignOut(Schema):
    counted: bool = Field(description="False when this person had signed already.")
    confirmation: str = Field(description="none, pending (an email asks them) or confirmed.")
