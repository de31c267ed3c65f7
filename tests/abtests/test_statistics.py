"""The confidence the report states, checked against values worked out by hand."""

import math

import pytest
from django.utils import timezone

from mailings import abtests
from mailings.models import Delivery
from tests.abtests.conftest import start


def test_z_test_of_20_against_25_percent_in_a_thousand_each():
    """Pooled p = 0.225, standard error 0.018675, z = 2.677, two-sided p = 0.0074."""
    z, p = abtests.z_test(250, 1000, 200, 1000)
    assert z == pytest.approx(2.6774, abs=1e-4)
    assert p == pytest.approx(0.00742, abs=1e-4)


def test_z_test_without_variation_finds_no_difference():
    assert abtests.z_test(0, 500, 0, 500) == (0.0, 1.0)
    assert abtests.z_test(3, 0, 1, 10) == (0.0, 1.0)


def test_probability_best_of_one_success_against_one_failure_is_five_sixths():
    """Beta(2, 1) against Beta(1, 2): P = ∫ 2x · (1 - (1 - x)²) dx = 5/6."""
    a, b = abtests.probability_best([(1, 1), (0, 1)])
    assert a == pytest.approx(5 / 6, abs=1e-4)
    assert b == pytest.approx(1 / 6, abs=1e-4)


def test_probability_best_matches_the_normal_approximation_for_large_samples():
    """200/1000 against 250/1000: P(B better) ≈ Φ(0.05 / 0.018641) = 0.9963."""
    _, b = abtests.probability_best([(200, 1000), (250, 1000)])
    expected = abtests.normal_cdf(0.05 / math.sqrt(0.2 * 0.8 / 1000 + 0.25 * 0.75 / 1000))
    assert b == pytest.approx(expected, abs=2e-3)


def test_equal_results_share_the_chance_evenly():
    chances = abtests.probability_best([(30, 300)] * 4)
    assert chances == pytest.approx([0.25] * 4, abs=1e-6)
    assert sum(chances) == pytest.approx(1.0)


@pytest.mark.django_db
def test_report_says_a_small_difference_is_too_close_to_call(
    tested, readers, campaign_user, django_capture_on_commit_callbacks
):
    start(tested, campaign_user, django_capture_on_commit_callbacks)
    a, b = tested.variants.all()
    rows = Delivery.objects.filter(mailing=tested, in_ab_test=True)
    rows.update(status=Delivery.Status.SENT)
    for variant, clicks in ((a, 3), (b, 4)):
        ids = list(rows.filter(variant=variant).values_list("pk", flat=True)[:clicks])
        Delivery.objects.filter(pk__in=ids).update(clicked_at=timezone.now())

    verdict = abtests.verdict(tested)

    assert [(row.sent, row.clicked) for row in verdict.rows] == [(10, 3), (10, 4)]
    assert verdict.leader.variant == b
    assert verdict.called is False
    assert verdict.sentence.startswith("Too close to call: B has 40.0% clicked and A 30.0%")


@pytest.mark.django_db
def test_report_calls_a_clear_difference(
    interest, campaign_user, django_capture_on_commit_callbacks
):
    from tests.abtests.conftest import ab_mailing, make_readers

    make_readers(interest, 400)
    mailing = ab_mailing(interest, percent=100)
    start(mailing, campaign_user, django_capture_on_commit_callbacks)
    a, b = mailing.variants.all()
    rows = Delivery.objects.filter(mailing=mailing, in_ab_test=True)
    rows.update(status=Delivery.Status.SENT)
    for variant, clicks in ((a, 20), (b, 60)):
        ids = list(rows.filter(variant=variant).values_list("pk", flat=True)[:clicks])
        Delivery.objects.filter(pk__in=ids).update(clicked_at=timezone.now())

    verdict = abtests.verdict(mailing)

    assert verdict.called is True
    assert verdict.p_value < 0.001
    assert verdict.sentence.startswith("Variant B is ahead: 30.0% clicked against 10.0% for A.")
