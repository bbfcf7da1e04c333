import numpy as np
import pytest

from inspector.calibration import (
    CalibrationError, average_precision, bootstrap_auc_interval, choose_threshold, confusion, roc_auc,
)
from inspector.settings import ThresholdConfig

GOOD = np.array([1.0, 2.0, 3.0, 4.0])  # mean 2.5, population std sqrt(1.25) = 1.1180340
DEFECT = np.array([3.5, 5.0, 6.0])


@pytest.mark.parametrize(
    "config, expected",
    [
        (ThresholdConfig(policy="mean_std", k=2.5), 2.5 + 2.5 * 1.118033988749895),
        (ThresholdConfig(policy="mean_std", k=1.0), 2.5 + 1.118033988749895),
        (ThresholdConfig(policy="mean_multiple", factor=2.0), 5.0),
        # 75% quantile of 1,2,3,4 with linear interpolation: 1 + 0.75 * 3 = 3.25
        (ThresholdConfig(policy="quantile", false_reject_rate=0.25), 3.25),
        # Candidates between neighbours 1,2,3,3.5,4,5,6: 3.25 catches all 3 defects with 1 false
        # reject (F1 6/7); 3.75 catches 2 with none (F1 0.8); 3.25 wins.
        (ThresholdConfig(policy="best_f1"), 3.25),
        # Recall 2/3 needs the 2nd-highest defect (5.0) caught: halfway to the next score below, 4.
        (ThresholdConfig(policy="target_recall", target_recall=0.6), 4.5),
        # Recall 1.0 needs 3.5 caught: halfway to 3.0.
        (ThresholdConfig(policy="target_recall", target_recall=1.0), 3.25),
    ],
)
def test_policies_match_hand_computed_values(config, expected):
    assert choose_threshold(GOOD, DEFECT, config) == pytest.approx(expected, abs=1e-9)


def test_supervised_policy_without_defects_is_refused():
    with pytest.raises(CalibrationError, match="needs defect images"):
        choose_threshold(GOOD, None, ThresholdConfig(policy="best_f1"))


def test_too_few_good_scores_is_refused():
    with pytest.raises(CalibrationError, match="at least 2 good"):
        choose_threshold(np.array([1.0]), None, ThresholdConfig())


def test_confusion_and_rates():
    c = confusion(GOOD, DEFECT, 3.25)  # defect when score > threshold
    assert (c.true_positive, c.false_negative, c.false_positive, c.true_negative) == (3, 0, 1, 3)
    assert c.precision == pytest.approx(0.75)
    assert c.recall == 1.0
    assert c.false_reject_rate == 0.25
    assert c.f1 == pytest.approx(6 / 7)


def test_roc_auc_by_hand():
    # Pairs (defect > good): 3.5 beats 1,2,3 -> 3; 5 and 6 beat all 4 -> 8; total 11 of 12.
    assert roc_auc(GOOD, DEFECT) == pytest.approx(11 / 12)
    assert roc_auc(np.array([1.0, 2.0]), np.array([2.0])) == pytest.approx(0.75)  # a tie counts half


def test_average_precision_by_hand():
    # Ranked: 6 D, 5 D, 4 G, 3.5 D, 3 G ... -> precision at each recall step: 1, 1, 3/4.
    assert average_precision(GOOD, DEFECT) == pytest.approx((1 + 1 + 0.75) / 3)


def test_bootstrap_interval_brackets_the_auc():
    rng = np.random.default_rng(0)
    good, defect = rng.normal(0, 1, 20), rng.normal(1.5, 1, 50)
    low, high = bootstrap_auc_interval(good, defect, rounds=500)
    assert low < roc_auc(good, defect) < high
    assert 0.05 < high - low < 0.4
