"""Threshold policies, recalibration of a bundle, and detection metrics (ROC AUC, average
precision, confusion).

A part is judged a defect when its score is strictly greater than the threshold.

Adaptive policies (from good scores only): `mean_std` (mean + k * population std),
`mean_multiple` (factor * mean), `quantile` (the (1 - false_reject_rate) quantile, linear
interpolation). Supervised policies (need defect scores): `best_f1` and `target_recall`, which
place the threshold halfway between two neighbouring observed scores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .bundle import Bundle, now_iso
from .errors import CalibrationError
from .settings import POLICY_PARAMETERS, SUPERVISED_POLICIES, Pipeline, ThresholdConfig


@dataclass(frozen=True)
class Confusion:
    true_positive: int  # defect flagged
    false_negative: int  # defect passed
    false_positive: int  # good part rejected
    true_negative: int  # good part passed

    @property
    def precision(self) -> float:
        flagged = self.true_positive + self.false_positive
        return self.true_positive / flagged if flagged else 0.0

    @property
    def recall(self) -> float:
        defects = self.true_positive + self.false_negative
        return self.true_positive / defects if defects else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def false_reject_rate(self) -> float:
        good = self.false_positive + self.true_negative
        return self.false_positive / good if good else 0.0

    def to_dict(self) -> dict:
        return {
            "true_positive": self.true_positive, "false_negative": self.false_negative,
            "false_positive": self.false_positive, "true_negative": self.true_negative,
            "precision": self.precision, "recall": self.recall, "f1": self.f1,
            "false_reject_rate": self.false_reject_rate,
        }


def confusion(good: np.ndarray, defect: np.ndarray, threshold: float) -> Confusion:
    good, defect = np.asarray(good, float), np.asarray(defect, float)
    tp = int((defect > threshold).sum())
    fp = int((good > threshold).sum())
    return Confusion(tp, len(defect) - tp, fp, len(good) - fp)


def choose_threshold(good: np.ndarray, defect: np.ndarray | None, config: ThresholdConfig) -> float:
    """The threshold the policy in `config` picks from good (and, if needed, defect) scores."""
    good = np.asarray(good, dtype=np.float64)
    if good.size < 2:
        raise CalibrationError(f"need at least 2 good images to calibrate, got {good.size}")
    policy = config.policy
    if policy == "mean_std":
        return float(good.mean() + config.k * good.std())
    if policy == "mean_multiple":
        return float(config.factor * good.mean())
    if policy == "quantile":
        return float(np.quantile(good, 1.0 - config.false_reject_rate))
    defect = np.asarray(defect if defect is not None else [], dtype=np.float64)
    if defect.size == 0:
        raise CalibrationError(f"policy {policy!r} needs defect images (--defect DIR)")
    if policy == "best_f1":
        return _best_f1(good, defect)
    return _target_recall(good, defect, config.target_recall)


def needs_defects(policy: str) -> bool:
    return policy in SUPERVISED_POLICIES


@dataclass
class Recalibration:
    """A bundle's threshold before and after, and the scores that chose it."""

    old: float
    new: float
    policy: str
    good: np.ndarray
    defect: np.ndarray
    before: Confusion  # of those scores at the old threshold
    after: Confusion


def recalibrate(
    bundle: Bundle,
    good: np.ndarray,
    defect: np.ndarray,
    sources: list[str],
    reviews: tuple[np.ndarray, np.ndarray] | None = None,
    policy: str | None = None,
    **parameters: float | None,
) -> Recalibration:
    """Choose a bundle's threshold again (the bundle is changed, not saved).

    `good` and `defect` are scores of labelled images, `sources` says where they come from.
    `reviews`, (scores of parts QA dismissed as false alarms, scores of defects QA confirmed),
    adds the bundle's own good calibration scores and QA's decisions; with confirmed defects the
    policy is best_f1 unless one is given. `policy` and its parameters (k, factor,
    false_reject_rate, target_recall; None: keep the pipeline's) change the pipeline's policy.
    """
    if reviews is not None:
        dismissed, confirmed = reviews
        own = np.array(bundle.calibration.get("good_scores", []), dtype=float)
        good = np.concatenate([good, own, dismissed])
        defect = np.concatenate([defect, confirmed])
        sources = [*sources, f"{len(own)} calibration good scores of the bundle, {len(dismissed)} false alarms "
                             f"and {len(confirmed)} confirmed defects reviewed by QA"]
    pipeline = recalibration_settings(bundle.pipeline, policy, len(defect) > 0, reviews is not None, **parameters)
    old = bundle.threshold
    new = choose_threshold(good, defect, pipeline.threshold)
    bundle.pipeline, bundle.threshold = pipeline, new
    bundle.threshold_info = threshold_info(pipeline.threshold, "; ".join(sources))
    bundle.calibration.update({
        "good": score_statistics(good),
        "good_scores": [float(s) for s in good],
        "defect_scores": [float(s) for s in defect],
    })
    return Recalibration(old, new, pipeline.threshold.policy, good, defect,
                         confusion(good, defect, old), confusion(good, defect, new))


def recalibration_settings(pipeline: Pipeline, policy: str | None = None, defects: bool = False,
                           reviews: bool = False, **parameters: float | None) -> Pipeline:
    """The pipeline with the threshold settings a recalibration uses, checked before any image
    is scored (`CalibrationError`, `ConfigError`).

    `defects`: whether there will be defect scores; `reviews`: whether QA's reviews are used,
    which makes the policy best_f1 when there are defects and none is given. A parameter of
    another policy than the one used, or a policy needing defects without them, is refused.
    """
    if policy is None and reviews and defects:
        policy = "best_f1"
    changes = {name: value for name, value in {"policy": policy, **parameters}.items() if value is not None}
    pipeline = pipeline.replace("threshold", **changes)
    chosen = pipeline.threshold.policy
    owners = {parameter: name for name, parameter in POLICY_PARAMETERS.items() if parameter}
    for name, value in parameters.items():
        if value is not None and owners.get(name) != chosen:
            raise CalibrationError(f"{name!r} is a parameter of policy {owners.get(name)!r}, not of {chosen!r}")
    if needs_defects(chosen) and not defects:
        raise CalibrationError(f"policy {chosen!r} needs defect images (--defect DIR) or defects confirmed by QA")
    return pipeline


def threshold_info(config: ThresholdConfig, source: str) -> dict:
    """How a threshold was chosen, as the bundle records it: the policy, its parameter, from what data."""
    parameter = POLICY_PARAMETERS[config.policy]
    return {"policy": config.policy, **({parameter: getattr(config, parameter)} if parameter else {}),
            "source": source, "chosen": now_iso()}


def _candidates(good: np.ndarray, defect: np.ndarray) -> np.ndarray:
    """Thresholds between each pair of neighbouring distinct scores, and one above them all."""
    values = np.unique(np.concatenate([good, defect]))
    midpoints = (values[:-1] + values[1:]) / 2.0
    below = values[0] - 1.0
    return np.concatenate([[below], midpoints, [values[-1]]])


def _best_f1(good: np.ndarray, defect: np.ndarray) -> float:
    best, best_f1 = None, -1.0
    for t in _candidates(good, defect):  # ascending: ties keep the lowest threshold
        f1 = confusion(good, defect, t).f1
        if f1 > best_f1:
            best, best_f1 = t, f1
    return float(best)


def _target_recall(good: np.ndarray, defect: np.ndarray, target: float) -> float:
    """The highest threshold that still catches at least `target` of the defects.

    The highest such threshold rejects the fewest good parts.
    """
    needed = max(1, math.ceil(target * defect.size - 1e-9))
    ranked = np.sort(defect)[::-1]
    weakest_caught = ranked[needed - 1]
    lower = np.concatenate([good, defect])
    lower = lower[lower < weakest_caught]
    if lower.size:
        return float((weakest_caught + lower.max()) / 2.0)
    return float(weakest_caught - max(abs(weakest_caught) * 1e-6, 1e-12))


def roc_auc(good: np.ndarray, defect: np.ndarray) -> float:
    """Probability that a random defect scores above a random good part (ties count half)."""
    good, defect = np.asarray(good, float), np.asarray(defect, float)
    if good.size == 0 or defect.size == 0:
        raise CalibrationError("ROC AUC needs both good and defect scores")
    greater = (defect[:, None] > good[None, :]).sum()
    ties = (defect[:, None] == good[None, :]).sum()
    return float((greater + 0.5 * ties) / (good.size * defect.size))


def roc_curve(good: np.ndarray, defect: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False-positive rate and true-positive rate as the threshold sweeps down all scores."""
    thresholds = np.concatenate([[np.inf], np.unique(np.concatenate([good, defect]))[::-1]])
    fpr = np.array([(good >= t).mean() for t in thresholds])
    tpr = np.array([(defect >= t).mean() for t in thresholds])
    return fpr, tpr


def average_precision(good: np.ndarray, defect: np.ndarray) -> float:
    """Area under the precision-recall curve as a step sum over distinct thresholds."""
    good, defect = np.asarray(good, float), np.asarray(defect, float)
    ap, last_recall = 0.0, 0.0
    for t in np.unique(np.concatenate([good, defect]))[::-1]:
        tp = (defect >= t).sum()
        fp = (good >= t).sum()
        recall = tp / defect.size
        ap += (recall - last_recall) * (tp / (tp + fp))
        last_recall = recall
    return float(ap)


def bootstrap_auc_interval(
    good: np.ndarray, defect: np.ndarray, rounds: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of ROC AUC, resampling good and defect parts separately."""
    good, defect = np.asarray(good, float), np.asarray(defect, float)
    rng = np.random.default_rng(seed)
    aucs = np.empty(rounds)
    for i in range(rounds):
        aucs[i] = roc_auc(rng.choice(good, good.size), rng.choice(defect, defect.size))
    tail = (1.0 - level) / 2.0
    return float(np.quantile(aucs, tail)), float(np.quantile(aucs, 1.0 - tail))


def score_statistics(scores: np.ndarray) -> dict:
    scores = np.asarray(scores, dtype=np.float64)
    return {
        "count": int(scores.size),
        "mean": float(scores.mean()),
        "std": float(scores.std()),
        "min": float(scores.min()),
        "max": float(scores.max()),
        "p50": float(np.quantile(scores, 0.5)),
        "p95": float(np.quantile(scores, 0.95)),
        "p99": float(np.quantile(scores, 0.99)),
    }
