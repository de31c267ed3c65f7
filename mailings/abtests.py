"""
A/B tests: who gets which variant, choosing the winner, and how sure the result is.

When an A/B-tested mailing's audience is resolved, `deliveries_assign_variants`
puts a share of the recipients (ABTest.test_percent) in the test, split evenly
between the variants, and holds the rest (Delivery status "held", which no
worker claims). When the test's time is up, beat runs `abtests_finish_due`:
a test left to Rally gets its winner, and `abtest_choose_winner` (also behind
the mailing page's button) releases the rest with the winning variant.

The statistics are plain Python, small enough to read: a two-proportion
z-test between the leader and the runner-up, and the Bayesian probability
that each variant is the best, from Beta posteriors integrated on a grid.
"""

import datetime
import hashlib
import logging
import math
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from mailings import emails, sending
from mailings.exceptions import MailingRefused
from mailings.models import ABTest, Delivery, Mailing, Variant

logger = logging.getLogger(__name__)

MIN_VARIANTS, MAX_VARIANTS = 2, 4
UPDATE_CHUNK = 2000

# The result is called when both agree: the leader beats the runner-up with a
# two-sided p-value under 5%, and is the best with a probability of 95% or more.
SIGNIFICANCE = 0.05
PROBABILITY_TO_CALL = 0.95


# -- checks before sending ---------------------------------------------------------------


def problems(mailing: Mailing) -> list[str]:
    """Return what to fix before an A/B-tested mailing can be sent, as phrases ("add …")."""
    test = ABTest.objects.filter(mailing=mailing).first()
    count = mailing.variants.count()
    if test is None:
        if count:
            return ["set up the A/B test (share, winner by, length) or remove the variants"]
        return []
    if not MIN_VARIANTS <= count <= MAX_VARIANTS:
        return [f"give the A/B test two to four variants (it has {count})"]
    found = []
    for variant in mailing.variants.all():
        if not variant.subject.strip():
            found.append(f"give variant {variant.label} a subject")
        try:
            emails.check_merge_fields(variant.subject, variant.preheader)
        except emails.MergeFieldError as error:
            found.append(f"variant {variant.label}: {error.message}")
    return found


def abtest_copy(*, source: Mailing, to: Mailing) -> None:
    """Give the new mailing `to` the A/B test settings and variants of `source`."""
    test = ABTest.objects.filter(mailing=source).first()
    if test is not None:
        ABTest.objects.create(
            mailing=to,
            test_percent=test.test_percent,
            measure=test.measure,
            test_hours=test.test_hours,
            choose=test.choose,
        )
    Variant.objects.bulk_create(
        Variant(
            mailing=to,
            position=variant.position,
            subject=variant.subject,
            preheader=variant.preheader,
            blocks=variant.blocks,
        )
        for variant in source.variants.all()
    )


# -- assigning recipients ----------------------------------------------------------------


def variant_key(mailing_id: int, supporter_id: int) -> int:
    """Return the supporter's place in the mailing's shuffled order: a hash, the same every time."""
    digest = hashlib.sha256(f"rally-ab:{mailing_id}:{supporter_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def deliveries_assign_variants(*, mailing: Mailing, now=None) -> dict:
    """Put each queued delivery of `mailing` in one variant, or hold it for the winner.

    Recipients are ordered by variant_key (a hash of mailing and supporter,
    so the order is random but the same on every run); the first
    test_percent of them are dealt out to the variants in turn, so each
    variant gets the same number (give or take one), and the rest are held.
    Call inside the transaction that resolved the audience, before any
    sender can claim a row. Return {variant label or "held": count}.
    """
    test = ABTest.objects.filter(mailing=mailing).first()
    variants = list(mailing.variants.all())
    if test is None or len(variants) < MIN_VARIANTS:
        return {}
    rows = list(
        Delivery.objects.filter(mailing=mailing, status=Delivery.Status.QUEUED, variant=None)
        .order_by()
        .values_list("pk", "supporter_id")
    )
    rows.sort(key=lambda row: variant_key(mailing.pk, row[1]))
    in_test = round(len(rows) * test.test_percent / 100)
    # Too few recipients to give each variant one: everyone is in the test.
    if in_test < len(variants):
        in_test = len(rows)
    groups = {variant.pk: [] for variant in variants}
    for rank, (delivery_id, _) in enumerate(rows[:in_test]):
        groups[variants[rank % len(variants)].pk].append(delivery_id)
    for variant_id, ids in groups.items():
        for start in range(0, len(ids), UPDATE_CHUNK):
            Delivery.objects.filter(pk__in=ids[start : start + UPDATE_CHUNK]).update(
                variant_id=variant_id, in_ab_test=True
            )
    # Everyone not dealt a variant waits: one statement, however large the rest.
    held = Delivery.objects.filter(
        mailing=mailing, status=Delivery.Status.QUEUED, variant=None
    ).update(status=Delivery.Status.HELD)
    now = now or timezone.now()
    ABTest.objects.filter(pk=test.pk).update(
        ends_at=now + datetime.timedelta(hours=test.test_hours)
    )
    counts = {variant.label: len(groups[variant.pk]) for variant in variants}
    counts["held"] = held
    logger.info("Mailing %s: A/B test assigned %s", mailing.pk, counts)
    return counts


# -- choosing the winner -----------------------------------------------------------------


def abtest_choose_winner(
    *, mailing: Mailing, variant: Variant | None = None, actor=None
) -> Variant:
    """Make `variant` (or, if None, the leader by the test's measure) the winner and send it on.

    The choice is a conditional UPDATE (only while no winner is set), and
    the held deliveries are released in the same transaction, so two staff
    pressing at once, or staff and beat, cannot both choose, and a crash
    leaves either nothing done or everything. Refuse (MailingRefused) a
    second, different choice, or a choice for a mailing that is cancelled
    or finished.
    """
    with transaction.atomic():
        test = ABTest.objects.select_for_update().filter(mailing=mailing).first()
        if test is None:
            raise MailingRefused(f"“{mailing}” has no A/B test.")
        status = Mailing.objects.filter(pk=mailing.pk).values_list("status", flat=True).first()
        if status not in (Mailing.Status.SENDING, Mailing.Status.PAUSED):
            raise MailingRefused(
                f"“{mailing}” is {Mailing.Status(status).label.lower()}: no winner can be sent now."
            )
        if variant is None:
            variant = leader(mailing, test)
        elif variant.mailing_id != mailing.pk:
            raise MailingRefused("That variant belongs to another mailing.")
        chosen = ABTest.objects.filter(pk=test.pk, winner__isnull=True).update(
            winner=variant, winner_chosen_at=timezone.now(), winner_chosen_by=actor
        )
        if not chosen and test.winner_id != variant.pk:
            raise MailingRefused(
                f"Variant {test.winner.label} was already chosen as the winner "
                "and sent to the rest."
            )
        released = deliveries_release_held(mailing=mailing, winner=variant)
    logger.info(
        "Mailing %s: variant %s won the A/B test; %s held deliveries released",
        mailing.pk,
        variant.label,
        released,
    )
    return variant


def deliveries_release_held(*, mailing: Mailing, winner: Variant) -> int:
    """Queue the held deliveries of `mailing` with the `winner`; return how many.

    Safe to repeat: only rows still held change. Senders start once the
    transaction commits, if the mailing is sending.
    """
    released = Delivery.objects.filter(mailing=mailing, status=Delivery.Status.HELD).update(
        status=Delivery.Status.QUEUED, variant=winner
    )
    if released:
        fresh = Mailing.objects.get(pk=mailing.pk)
        if fresh.status == Mailing.Status.SENDING:
            sending.mailing_enqueue_senders(mailing=fresh)
    return released


def abtests_finish_due(*, now=None) -> list[int]:
    """Choose the winner of every test left to Rally whose time is up; return their mailings' ids.

    Run by beat. Tests left to staff wait for them (the mailing page says
    the time is up). A paused mailing waits until it is resumed. Winners
    chosen whose held deliveries were somehow not all released are released.
    """
    now = now or timezone.now()
    done = []
    due = ABTest.objects.filter(
        winner__isnull=True,
        choose=ABTest.Choice.AUTO,
        ends_at__lte=now,
        mailing__status=Mailing.Status.SENDING,
    ).select_related("mailing")
    for test in due:
        try:
            abtest_choose_winner(mailing=test.mailing)
        except MailingRefused as error:
            logger.info("Mailing %s: A/B winner not chosen: %s", test.mailing_id, error.message)
            continue
        done.append(test.mailing_id)
    stranded = ABTest.objects.filter(
        winner__isnull=False,
        mailing__status=Mailing.Status.SENDING,
        mailing__deliveries__status=Delivery.Status.HELD,
    ).distinct()
    for test in stranded.select_related("mailing", "winner"):
        with transaction.atomic():
            deliveries_release_held(mailing=test.mailing, winner=test.winner)
    return done


# -- results -----------------------------------------------------------------------------


@dataclass
class VariantResult:
    variant: Variant
    sent: int
    opened: int
    clicked: int
    successes: int  # by the test's measure
    probability_best: float = 0.0

    @property
    def rate(self):
        return self.successes / self.sent if self.sent else 0.0

    @property
    def percent(self):
        return round(100 * self.rate, 1)

    @property
    def opened_percent(self):
        return round(100 * self.opened / self.sent, 1) if self.sent else 0.0

    @property
    def clicked_percent(self):
        return round(100 * self.clicked / self.sent, 1) if self.sent else 0.0

    @property
    def chance(self):
        """The chance of being best, as staff read it ("under 1%", "62%")."""
        return _percent(self.probability_best)


def results(mailing: Mailing, test: ABTest | None = None) -> list[VariantResult]:
    """Return each variant's figures among the recipients in the test, in variant order."""
    test = test or ABTest.objects.get(mailing=mailing)
    counted = {
        row["variant"]: row
        for row in Delivery.objects.filter(mailing=mailing, in_ab_test=True)
        .order_by()
        .values("variant")
        .annotate(
            sent=Count("id", filter=Q(status=Delivery.Status.SENT)),
            opened=Count("id", filter=Q(status=Delivery.Status.SENT, opened_at__isnull=False)),
            clicked=Count("id", filter=Q(status=Delivery.Status.SENT, clicked_at__isnull=False)),
        )
    }
    rows = []
    for variant in mailing.variants.all():
        row = counted.get(variant.pk, {"sent": 0, "opened": 0, "clicked": 0})
        successes = row["clicked"] if test.measure == ABTest.Measure.CLICKS else row["opened"]
        rows.append(VariantResult(variant, row["sent"], row["opened"], row["clicked"], successes))
    chances = probability_best([(row.successes, row.sent) for row in rows])
    for row, chance in zip(rows, chances, strict=True):
        row.probability_best = chance
    return rows


def leader(mailing: Mailing, test: ABTest) -> Variant:
    """Return the variant with the best rate by the test's measure (the first, on a tie)."""
    rows = results(mailing, test)
    best = max(rows, key=lambda row: (row.rate, -row.variant.position))
    return best.variant


@dataclass
class Verdict:
    rows: list
    leader: VariantResult | None
    runner_up: VariantResult | None
    z: float | None
    p_value: float | None
    called: bool
    sentence: str


def verdict(mailing: Mailing, test: ABTest | None = None) -> Verdict:
    """Return the results with an honest sentence on how sure they are."""
    test = test or ABTest.objects.get(mailing=mailing)
    rows = results(mailing, test)
    measure = "clicked" if test.measure == ABTest.Measure.CLICKS else "opened"
    if sum(row.sent for row in rows) == 0 or any(row.sent == 0 for row in rows):
        return Verdict(
            rows, None, None, None, None, False, "No results yet: not every variant has been sent."
        )
    ranked = sorted(rows, key=lambda row: (-row.rate, row.variant.position))
    first, second = ranked[0], ranked[1]
    z, p = z_test(first.successes, first.sent, second.successes, second.sent)
    called = p < SIGNIFICANCE and first.probability_best >= PROBABILITY_TO_CALL
    if first.successes == 0:
        sentence = f"Too early to call: nobody has {measure} yet."
    elif called:
        sentence = (
            f"Variant {first.variant.label} is ahead: {first.percent}% {measure} against "
            f"{second.percent}% for {second.variant.label}. A difference this size would come "
            f"up by chance less than {_one_in(p)}, and the chance that "
            f"{first.variant.label} is the best is {_percent(first.probability_best)}."
        )
    else:
        sentence = (
            f"Too close to call: {first.variant.label} has {first.percent}% {measure} and "
            f"{second.variant.label} {second.percent}%, but a difference this size would come "
            f"up by chance {_percent(p)} of the time (p = {p:.2f}). The chance that "
            f"{first.variant.label} is the best is {_percent(first.probability_best)}. Either "
            "would do; more recipients in the test would tell them apart."
        )
    return Verdict(rows, first, second, z, p, called, sentence)


def _percent(value):
    if value >= 0.995:
        return "over 99%"
    if value < 0.01:
        return "under 1%"
    return f"{round(100 * value)}%"


def _one_in(p):
    if p < 0.001:
        return "one time in a thousand"
    if p < 0.01:
        return "one time in a hundred"
    return "one time in twenty"


# -- statistics --------------------------------------------------------------------------


def normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def z_test(successes_a: int, n_a: int, successes_b: int, n_b: int) -> tuple[float, float]:
    """Return (z, two-sided p-value) of the two-proportion z-test with a pooled proportion.

    With no variation at all (both 0% or both 100%) there is no evidence of
    a difference: (0, 1).
    """
    if not n_a or not n_b:
        return 0.0, 1.0
    pooled = (successes_a + successes_b) / (n_a + n_b)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if spread == 0:
        return 0.0, 1.0
    z = (successes_a / n_a - successes_b / n_b) / spread
    return z, 2 * (1 - normal_cdf(abs(z)))


GRID_POINTS = 4001


def probability_best(counts: list[tuple[int, int]]) -> list[float]:
    """Return, for each (successes, trials), the probability that its true rate is the highest.

    Each rate's belief is Beta(1 + successes, 1 + failures) (a flat prior).
    P(i is best) = ∫ pdf_i(x) · Π_{j≠i} cdf_j(x) dx, integrated with the
    trapezoid rule on a grid spanning every posterior (ten standard
    deviations either side of each mean, within 0 to 1), where each density
    is normalised on the grid itself, so no gamma functions are needed.
    """
    if not counts:
        return []
    params = [(1 + k, 1 + n - k) for k, n in counts]
    low, high = 1.0, 0.0
    for a, b in params:
        mean = a / (a + b)
        sd = math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
        low, high = min(low, mean - 10 * sd), max(high, mean + 10 * sd)
    low, high = max(0.0, low), min(1.0, high)
    step = (high - low) / (GRID_POINTS - 1)
    xs = [low + i * step for i in range(GRID_POINTS)]
    pdfs, cdfs = [], []
    for a, b in params:
        logs = [_log_beta_kernel(x, a, b) for x in xs]
        top = max(logs)
        density = [math.exp(v - top) if v > -math.inf else 0.0 for v in logs]
        total = sum((density[i] + density[i + 1]) * step / 2 for i in range(GRID_POINTS - 1))
        density = [d / total for d in density]
        cumulative, running = [0.0], 0.0
        for i in range(GRID_POINTS - 1):
            running += (density[i] + density[i + 1]) * step / 2
            cumulative.append(min(running, 1.0))
        pdfs.append(density)
        cdfs.append(cumulative)
    chances = []
    for i in range(len(params)):
        values = []
        for point in range(GRID_POINTS):
            value = pdfs[i][point]
            for j in range(len(params)):
                if j != i:
                    value *= cdfs[j][point]
            values.append(value)
        chances.append(sum((values[p] + values[p + 1]) * step / 2 for p in range(GRID_POINTS - 1)))
    total = sum(chances) or 1.0
    return [chance / total for chance in chances]


def _log_beta_kernel(x, a, b):
    """Return log(x^(a-1) (1-x)^(b-1)), with 0^0 = 1."""
    value = 0.0
    for base, power in ((x, a - 1), (1 - x, b - 1)):
        if power:
            if base <= 0:
                return -math.inf
            value += power * math.log(base)
    return value


def summary(mailing: Mailing, now=None) -> dict | None:
    """Return what the mailing page and the report show of the mailing's A/B test, or None."""
    test = ABTest.objects.filter(mailing=mailing).select_related("winner").first()
    if test is None:
        return None
    now = now or timezone.now()
    started = test.ends_at is not None
    judged = verdict(mailing, test) if started else None
    held = (
        Delivery.objects.filter(mailing=mailing, status=Delivery.Status.HELD).count()
        if started
        else 0
    )
    return {
        "test": test,
        "variants": list(mailing.variants.all()),
        "verdict": judged,
        "started": started,
        "time_up": started and test.ends_at <= now,
        "held": held,
        "can_choose": started
        and test.winner_id is None
        and mailing.status in (Mailing.Status.SENDING, Mailing.Status.PAUSED),
        "opens_warning": test.measure == ABTest.Measure.OPENS,
        "rest_percent": 100 - test.test_percent,
    }
