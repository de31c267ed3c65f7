"""
What the apps built on the CRM add to it, registered in their AppConfig.ready().

crm knows nothing of the apps that use it (an import-linter contract holds
that line); an app that keeps data about supporters, or builds on segments,
adds its part here, as Django's admin lets each app register its models:

    data_exports        supporter -> dict merged into the supporter's data export
    erasures            supporter -> None, run inside supporter_erase's transaction
    segment_uses        segment ids -> a sentence for each unfinished piece of work
                        that uses these segments (refuses their deletion)
    segment_users       segment ids -> {segment id: [SegmentUser, ...]}: everything
                        that uses each segment, finished or not, for the segment list
    segment_conditions  rule name -> (rule value -> Q on Supporter) for segment
                        rules whose answer lives in another app's tables
    timelines           a supporter's timeline entries (crm.timeline.Entry)
    engagements         figures for the head of a supporter's page (crm.timeline.Figure)

mailings registers its deliveries (export, erasure), the mailings that use a
segment (the unfinished ones, and all of them for the list), and the engagement
rules (opened_within_days, clicked_within_days); on a supporter's page, every
mailing sent to them and when they last opened and clicked.
"""

from dataclasses import dataclass

data_exports = []
erasures = []
segment_uses = []
segment_users = []
segment_conditions = {}
timelines = []
engagements = []


@dataclass(frozen=True)
class SegmentUser:
    """One thing that uses a segment, as the segment list names it: "Spring appeal (draft)"."""

    name: str
    url: str
    note: str = ""


def register_data_export(function):
    """Add `function(*, supporter) -> dict` to every supporter's data export."""
    if function not in data_exports:
        data_exports.append(function)
    return function


def register_erasure(function):
    """Run `function(*, supporter)` when a supporter is erased, inside the erasure's transaction."""
    if function not in erasures:
        erasures.append(function)
    return function


def register_segment_use(function):
    """Ask `function(segment_ids) -> list[str]` what uses a segment before it is deleted."""
    if function not in segment_uses:
        segment_uses.append(function)
    return function


def register_segment_users(function):
    """Ask `function(segment_ids) -> {segment id: [SegmentUser]}` what uses each segment."""
    if function not in segment_users:
        segment_users.append(function)
    return function


def register_segment_condition(rule, function):
    """Answer segment rule `rule` with `function(value) -> Q` on Supporter."""
    segment_conditions[rule] = function
    return function


def register_timeline(function):
    """Add `function(*, supporter, before, limit) -> list[crm.timeline.Entry]` to the timeline.

    It returns the supporter's newest entries that happened before `before`
    (a datetime, or None for now), newest first, at most `limit` of them.
    """
    if function not in timelines:
        timelines.append(function)
    return function


def register_engagement(function):
    """Add `function(*, supporter) -> list[crm.timeline.Figure]` to a supporter's page."""
    if function not in engagements:
        engagements.append(function)
    return function
