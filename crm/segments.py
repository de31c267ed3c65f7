"""
Rule-based segments: the saved definition, its validation and its translation
into one database filter.

A definition is a dict with any of these keys (all optional; an empty
definition matches every supporter):

    interests          slugs: subscribed to any of them
    partners           slugs: came from any of these partners
    countries          ISO 3166 codes
    postcode_prefixes  postcode starts with any of these (case and spaces aside)
    tags               tagged with any of these
    statuses           supporter status values
    joined_after       ISO date, inclusive
    joined_before      ISO date, inclusive
    opened_within_days opened any mailing in the last N days
    clicked_within_days clicked a link in any mailing in the last N days
    quiet_for_days     joined more than N days ago and neither opened nor clicked
                       any mailing in the last N days (candidates for re-permission)

Numbers and dates have bounds (MAX_DAYS, EARLIEST_DATE, LATEST_DATE): past
them the database query cannot be built (a date before year 1), so a rule
outside them is refused with a message rather than answered with an error page.
"""

import datetime

from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from django_countries import countries

from crm import extensions
from crm.exceptions import SegmentRuleError

RULE_KEYS = (
    "interests",
    "partners",
    "countries",
    "postcode_prefixes",
    "tags",
    "statuses",
    "joined_after",
    "joined_before",
    "opened_within_days",
    "clicked_within_days",
    "quiet_for_days",
)

# The engagement rules, answered by the mailing history (crm.extensions.segment_conditions).
ENGAGEMENT_KEYS = ("opened_within_days", "clicked_within_days", "quiet_for_days")


# Ten years: longer than any mailing history, and far from datetime's year-1 limit.
MAX_DAYS = 3650
EARLIEST_DATE = datetime.date(1900, 1, 1)
LATEST_DATE = datetime.date(2999, 12, 31)


def _as_list(rules, key):
    value = rules.get(key) or []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise SegmentRuleError(f"Rule '{key}' must be a list of text values.")
    return [item.strip() for item in value if item.strip()]


def _as_date(rules, key):
    value = rules.get(key)
    if not value:
        return None
    try:
        date = datetime.date.fromisoformat(value)
    except (TypeError, ValueError):
        raise SegmentRuleError(
            f"Rule '{key}' must be a date written as YYYY-MM-DD, not {value!r}."
        ) from None
    if not EARLIEST_DATE <= date <= LATEST_DATE:
        raise SegmentRuleError(
            f"Rule '{key}' must be a date between {EARLIEST_DATE.isoformat()} and "
            f"{LATEST_DATE.isoformat()}, not {value}."
        )
    return date


def _as_days(rules, key):
    value = rules.get(key)
    if value in (None, ""):
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_DAYS:
        raise SegmentRuleError(
            f"Rule '{key}' must be a whole number of days from 1 to {MAX_DAYS:,} "
            f"(ten years), not {value!r}."
        )
    return value


def validate_rules(rules):
    """Return `rules` cleaned, or raise SegmentRuleError saying what to fix."""
    from crm.models import CampaignInterest, PartnerOrganisation, Supporter

    if not isinstance(rules, dict):
        raise SegmentRuleError("A segment definition must be a set of named rules.")
    unknown = sorted(set(rules) - set(RULE_KEYS))
    if unknown:
        raise SegmentRuleError(
            f"Unknown rule {', '.join(map(repr, unknown))}; expected one of {', '.join(RULE_KEYS)}."
        )

    cleaned = {}
    for key, model, label in (
        ("interests", CampaignInterest, "Campaign interest"),
        ("partners", PartnerOrganisation, "Partner organisation"),
    ):
        slugs = _as_list(rules, key)
        found = set(model.objects.filter(slug__in=slugs).values_list("slug", flat=True))
        missing = [slug for slug in slugs if slug not in found]
        if missing:
            raise SegmentRuleError(
                f"{label} {', '.join(map(repr, missing))} does not exist "
                "(it may have been deleted). Remove it from the segment's rules."
            )
        if slugs:
            cleaned[key] = slugs

    codes = [code.upper() for code in _as_list(rules, "countries")]
    bad = [code for code in codes if code not in countries]
    if bad:
        raise SegmentRuleError(
            f"Unknown country code {', '.join(map(repr, bad))}; use ISO 3166 codes such as GB."
        )
    if codes:
        cleaned["countries"] = codes

    prefixes = [p.replace(" ", "").upper() for p in _as_list(rules, "postcode_prefixes")]
    if prefixes:
        cleaned["postcode_prefixes"] = prefixes
    tags = _as_list(rules, "tags")
    if tags:
        cleaned["tags"] = tags

    statuses = _as_list(rules, "statuses")
    bad = [s for s in statuses if s not in Supporter.Status.values]
    if bad:
        raise SegmentRuleError(
            f"Unknown status {', '.join(map(repr, bad))}; "
            f"expected one of {', '.join(Supporter.Status.values)}."
        )
    if statuses:
        cleaned["statuses"] = statuses

    after, before = _as_date(rules, "joined_after"), _as_date(rules, "joined_before")
    if after and before and after > before:
        raise SegmentRuleError("'Joined after' must not be later than 'joined before'.")
    if after:
        cleaned["joined_after"] = after.isoformat()
    if before:
        cleaned["joined_before"] = before.isoformat()

    for key in ENGAGEMENT_KEYS:
        days = _as_days(rules, key)
        if days:
            cleaned[key] = days
    return cleaned


def rules_filter(rules):
    """Return a Q matching the supporters that `rules` describes.

    Raise SegmentRuleError if the definition no longer holds (for example it
    names an interest that has since been deleted), rather than silently
    matching more people than it did when it was saved.
    """
    from crm.models import CampaignInterest, PartnerOrganisation, Subscription, Supporter

    rules = validate_rules(rules)
    condition = Q()
    # Slugs become ids first (tiny lookups), so the planner filters the large
    # tables on indexed id columns instead of joining to resolve names.
    if "interests" in rules:
        interest_ids = CampaignInterest.objects.filter(slug__in=rules["interests"])
        condition &= Exists(
            Subscription.objects.filter(
                supporter=OuterRef("pk"),
                interest_id__in=list(interest_ids.values_list("pk", flat=True)),
                status=Subscription.Status.SUBSCRIBED,
            )
        )
    if "partners" in rules:
        partners = PartnerOrganisation.objects.filter(slug__in=rules["partners"])
        condition &= Q(partner_id__in=list(partners.values_list("pk", flat=True)))
    if "countries" in rules:
        condition &= Q(country__in=rules["countries"])
    if "postcode_prefixes" in rules:
        prefix_match = Q()
        for prefix in rules["postcode_prefixes"]:
            prefix_match |= Q(postcode__istartswith=prefix)
        condition &= prefix_match
    if "tags" in rules:
        condition &= Exists(
            Supporter.tags.through.objects.filter(
                supporter=OuterRef("pk"), tag__name__in=rules["tags"]
            )
        )
    if "statuses" in rules:
        condition &= Q(status__in=rules["statuses"])
    tz = timezone.get_current_timezone()
    if "joined_after" in rules:
        start = datetime.date.fromisoformat(rules["joined_after"])
        condition &= Q(created_at__gte=datetime.datetime.combine(start, datetime.time.min, tz))
    if "joined_before" in rules:
        end = datetime.date.fromisoformat(rules["joined_before"]) + datetime.timedelta(days=1)
        condition &= Q(created_at__lt=datetime.datetime.combine(end, datetime.time.min, tz))
    for key in ENGAGEMENT_KEYS:
        if key in rules:
            condition &= _condition_elsewhere(key, rules[key])
    return condition


def _condition_elsewhere(rule, value):
    # The mailing history answers the engagement rules: mailings registers
    # their conditions (crm.extensions.segment_conditions).
    condition = extensions.segment_conditions.get(rule)
    if condition is None:
        raise SegmentRuleError(f"Rule '{rule}' needs the mailing history, which is not installed.")
    return condition(value)


def mailings_using(segment_ids):
    """Return a sentence for each unfinished mailing that includes or excludes these segments.

    Unfinished: draft, scheduled, sending or paused. A scheduled mailing
    resolves its audience when it starts, and sending re-checks the excluded
    segments batch by batch, so a change to the segment changes who gets it.
    The apps that use segments answer (crm.extensions.segment_uses).
    """
    return [line for uses in extensions.segment_uses for line in uses(segment_ids)]


def segments_used_by(segment_ids):
    """Return {segment id: [SegmentUser]}: what uses each of these segments, finished or not.

    The apps that use segments answer (crm.extensions.segment_users).
    """
    used = {}
    for users in extensions.segment_users:
        for segment_id, found in users(segment_ids).items():
            used.setdefault(segment_id, []).extend(found)
    return used


def describe_rules(rules):
    """Return a rule-based segment's definition as sentences staff can read, one per rule.

    Dates are written the UK way (31/12/2024). Raise SegmentRuleError as rules_filter does.
    """
    from crm.models import CampaignInterest, PartnerOrganisation, Supporter

    rules = validate_rules(rules)
    lines = []
    if "interests" in rules:
        names = CampaignInterest.objects.filter(slug__in=rules["interests"])
        lines.append("Subscribed to any of: " + ", ".join(str(name) for name in names))
    if "partners" in rules:
        names = PartnerOrganisation.objects.filter(slug__in=rules["partners"])
        lines.append("Came from any of: " + ", ".join(str(name) for name in names))
    if "countries" in rules:
        lines.append(
            "Lives in any of: " + ", ".join(countries.name(code) for code in rules["countries"])
        )
    if "postcode_prefixes" in rules:
        lines.append("Postcode starts with any of: " + ", ".join(rules["postcode_prefixes"]))
    if "tags" in rules:
        lines.append("Tagged with any of: " + ", ".join(rules["tags"]))
    if "statuses" in rules:
        labels = dict(Supporter.Status.choices)
        lines.append("Status is any of: " + ", ".join(labels[s] for s in rules["statuses"]))
    for key, words in (("joined_after", "on or after"), ("joined_before", "on or before")):
        if key in rules:
            date = datetime.date.fromisoformat(rules[key])
            lines.append(f"Joined {words} {date:%d/%m/%Y}")
    for key, verb in (
        ("opened_within_days", "Opened"),
        ("clicked_within_days", "Clicked a link in"),
    ):
        if key in rules:
            lines.append(f"{verb} any mailing in the last {rules[key]:,} days")
    if "quiet_for_days" in rules:
        lines.append(
            f"Joined over {rules['quiet_for_days']:,} days ago and neither opened nor clicked "
            "any mailing since"
        )
    return lines or ["Everyone (no rules)"]


def changes_since(segment_ids, since):
    """Return a sentence for each of these segments whose rules changed after `since`.

    Names the latest change: when, by whom, and the segment's size before and after.
    """
    from crm.models import AuditEvent

    events = (
        AuditEvent.objects.filter(
            kind=AuditEvent.Kind.SEGMENT_CHANGED,
            created_at__gt=since,
            detail__segment__in=list(segment_ids),
        )
        .select_related("actor")
        .order_by("-created_at", "-id")
    )
    lines, seen = [], set()
    for event in events:
        detail = event.detail
        if detail.get("segment") in seen:
            continue
        seen.add(detail.get("segment"))
        when = timezone.localtime(event.created_at).strftime("%d %b %Y at %H:%M")
        who = event.actor.get_username() if event.actor else "someone"
        lines.append(
            f"Segment “{detail.get('name')}” changed on {when} by {who}, after this mailing "
            f"was last saved: {_members(detail.get('members_before'))} before, "
            f"{_members(detail.get('members'))} now."
        )
    return lines


def _members(count):
    return "an unknown number of members" if count is None else f"{count:,} members"
