"""
A journey's report: who entered, where they are, what each email did, who left and why.

Counted per view from the enrolments, the steps' visits and the journey
emails' deliveries, each with one grouped query (indexed by step).
"""

from dataclasses import dataclass, field
from datetime import timedelta

from django.db.models import Count, Q
from django.db.models.functions import TruncDate
from django.utils import timezone

from crm import charts
from mailings.journeys.models import Enrolment, Journey, JourneyStep, StepVisit
from mailings.models import Delivery

CHART_DAYS = 28


@dataclass
class StepFigures:
    step: JourneyStep
    entered: int = 0
    waiting: int = 0
    sent: int = 0
    opened: int = 0
    clicked: int = 0
    left: int = 0
    left_why: list = field(default_factory=list)

    def percent(self, part):
        return round(100 * part / self.sent, 1) if self.sent else 0

    @property
    def opened_percent(self):
        return self.percent(self.opened)

    @property
    def clicked_percent(self):
        return self.percent(self.clicked)


def _reasons(rows):
    labels = dict(Enrolment.Reason.choices)
    return [(labels.get(reason, reason or "Unknown"), count) for reason, count in rows if count]


def report(journey: Journey) -> dict:
    """Return the journey's figures: totals, per step of each version in use, and a chart."""
    enrolments = Enrolment.objects.filter(journey=journey)
    totals = enrolments.aggregate(
        entered=Count("pk"),
        active=Count("pk", filter=Q(state=Enrolment.State.ACTIVE)),
        done=Count("pk", filter=Q(state=Enrolment.State.DONE)),
        left=Count("pk", filter=Q(state=Enrolment.State.LEFT)),
    )
    left_why = _reasons(
        enrolments.filter(state=Enrolment.State.LEFT)
        .values_list("left_reason")
        .annotate(n=Count("pk"))
        .order_by("-n")
    )
    steps = list(
        JourneyStep.objects.filter(journey=journey)
        .select_related("mailing", "tag", "interest", "segment")
        .order_by("version", "position")
    )
    figures = {step.pk: StepFigures(step) for step in steps}
    for step_id, count in (
        StepVisit.objects.filter(step__journey=journey)
        .values_list("step_id")
        .annotate(n=Count("pk"))
    ):
        figures[step_id].entered = count
    at_steps = (
        enrolments.values_list("step_id", "state", "left_reason").annotate(n=Count("pk")).order_by()
    )
    for step_id, state, reason, count in at_steps:
        if step_id not in figures:
            continue
        if state == Enrolment.State.ACTIVE:
            figures[step_id].waiting += count
        elif state == Enrolment.State.LEFT:
            figures[step_id].left += count
            figures[step_id].left_why += _reasons([(reason, count)])
    mailing_ids = {step.mailing_id for step in steps if step.mailing_id}
    by_mailing = {
        row["mailing_id"]: row
        for row in Delivery.objects.filter(mailing_id__in=mailing_ids)
        .values("mailing_id")
        .annotate(
            sent=Count("pk", filter=Q(status=Delivery.Status.SENT)),
            opened=Count("pk", filter=Q(opened_at__isnull=False) | Q(clicked_at__isnull=False)),
            clicked=Count("pk", filter=Q(clicked_at__isnull=False)),
        )
        .order_by()
    }
    for step in steps:
        row = by_mailing.get(step.mailing_id)
        if row:
            # Versions share an email: its figures are the email's, shown once per version.
            figures[step.pk].sent = row["sent"]
            figures[step.pk].opened = row["opened"]
            figures[step.pk].clicked = row["clicked"]
    in_use = {step.version for step in steps if figures[step.pk].entered + figures[step.pk].waiting}
    in_use.add(journey.version)
    versions = [
        (version, [figures[step.pk] for step in steps if step.version == version])
        for version in sorted(in_use, reverse=True)
    ]
    return {
        "totals": totals,
        "left_why": left_why,
        "versions": versions,
        "chart": chart(journey),
        "steps_chart": steps_chart(journey, versions[0][1] if versions else []),
    }


def chart(journey: Journey) -> charts.Chart:
    """Entered, finished and left per day over the last four weeks."""
    since = timezone.localdate() - timedelta(days=CHART_DAYS - 1)
    days = [since + timedelta(days=n) for n in range(CHART_DAYS)]
    enrolments = Enrolment.objects.filter(journey=journey)
    entered = dict(
        enrolments.filter(entered_at__date__gte=since)
        .annotate(day=TruncDate("entered_at"))
        .values_list("day")
        .annotate(n=Count("pk"))
        .order_by()
    )
    ended = {}
    for state in (Enrolment.State.DONE, Enrolment.State.LEFT):
        ended[state] = dict(
            enrolments.filter(state=state, finished_at__date__gte=since)
            .annotate(day=TruncDate("finished_at"))
            .values_list("day")
            .annotate(n=Count("pk"))
            .order_by()
        )
    return charts.bars(
        [f"{day:%-d %b}" for day in days],
        [
            charts.Series("Entered", [entered.get(day, 0) for day in days]),
            charts.Series("Finished", [ended[Enrolment.State.DONE].get(day, 0) for day in days]),
            charts.Series("Left", [-ended[Enrolment.State.LEFT].get(day, 0) for day in days]),
        ],
        title="Entered, finished and left per day",
        x_name="Day",
    )


def steps_chart(journey: Journey, figures) -> charts.Chart:
    """Entered, waiting and left at each step of the live version."""
    return charts.bars(
        [f"Step {f.step.position}" for f in figures],
        [
            charts.Series("Reached", [f.entered for f in figures]),
            charts.Series("There now", [f.waiting for f in figures]),
            charts.Series("Left there", [-f.left for f in figures]),
        ],
        title="Supporters at each step",
        x_name="Step",
    )
