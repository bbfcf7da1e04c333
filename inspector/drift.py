"""Drift: has the line changed since the model was calibrated?

Three measures over the last parts of one station judged by one model, each against what the
bundle's calibration expects (`Reference`):

- Scores of passed parts: the median and the 90th percentile of the last `window` (50) scores
  of parts judged ok, against the same quantiles of the calibration's good scores that pass the
  threshold. Each difference is measured in calibration bands: the width between the 5th and
  95th percentiles of the calibration's good scores. The shift is the larger of the two, up or
  down (a blurred image may score lower and hide defects); it drifts past `limit` (0.5 bands).
- Flagged parts: among the last `window` parts judged, the share flagged against the
  calibrated false-reject rate (the `quantile` policy's target; for other policies the share of
  calibration good scores above the threshold), at least 1%. An alarm when the share is at
  least 3 times that rate and that many flags would happen by chance less than once in a
  thousand windows (binomial tail). Real defects count too: either way QA should look.
- Part-in-view errors ("no part found: ...", "part not in view: ..."): among the last
  `window` frames, the same rule against the share of training images skipped for that reason
  (at least 1%).

An alarm needs a full window, and until the window is full nothing is judged: the summary says
"not judged yet: 20 of 50 parts" rather than measures that a few parts make look alarming or
calm. `Monitor` (the daemon) raises it once and clears it when every
measure is back within bounds, the score shift below 0.8 x `limit` (so it does not flap at
the limit). `inspector stats` assesses the newest rows of the database the same way.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from .errors import BundleError

DEFAULT_WINDOW = 50
DEFAULT_LIMIT = 0.5  # calibration bands (p5-p95 of the good scores)
CLEAR_SHARE = 0.8  # an alarm clears when the shift falls below this share of the limit
RATE_FACTOR = 3.0  # a rate this many times the expected one ...
RATE_P = 0.001  # ... and this unlikely by chance is an alarm
MIN_RATE = 0.01  # expected rates are at least this: calibration sets are small
VIEW_ERRORS = ("no part found", "part not in view")

OK, FLAGGED, VIEW = "ok", "defect", "view"


def outcome(verdict: str | None, reason: str | None) -> str | None:
    """What a judged row counts as: ok, flagged, a part-in-view error, or nothing (None: an
    unreadable file, say, which says nothing about the line)."""
    if verdict in (OK, FLAGGED):
        return verdict
    if verdict == "error" and reason and reason.startswith(VIEW_ERRORS):
        return VIEW
    return None


@dataclass(frozen=True)
class Reference:
    """What the calibration of a bundle expects of an unchanged line."""

    threshold: float
    median: float  # of the calibration good scores that pass the threshold
    p90: float
    low: float  # 5th and 95th percentiles of all calibration good scores: the calibration band
    high: float
    false_reject_rate: float  # expected share of good parts flagged
    view_error_rate: float  # expected share of frames without a part fully in view

    @property
    def band(self) -> float:
        return max(self.high - self.low, 1e-9 * max(1.0, abs(self.median)))

    @classmethod
    def of(cls, bundle) -> "Reference":
        """From a `Bundle` (loaded, or only its metadata: `bundle.read_metadata`)."""
        good = np.asarray(bundle.calibration.get("good_scores", []), dtype=float)
        if good.size == 0:
            raise BundleError(f"{bundle.path}: the bundle holds no calibration good scores")
        threshold = float(bundle.threshold)
        passing = good[good <= threshold] if (good <= threshold).any() else good
        info = bundle.threshold_info
        expected = (float(info["false_reject_rate"]) if info.get("policy") == "quantile"
                    else float((good > threshold).mean()))
        skipped = [s.split(": ", 1)[-1] for s in bundle.training.get("skipped", [])]
        view = sum(s.startswith(VIEW_ERRORS) for s in skipped)
        looked_at = int(bundle.training.get("images", 0)) + view
        return cls(
            threshold=threshold,
            median=float(np.median(passing)), p90=float(np.quantile(passing, 0.9)),
            low=float(np.quantile(good, 0.05)), high=float(np.quantile(good, 0.95)),
            false_reject_rate=max(MIN_RATE, expected),
            view_error_rate=max(MIN_RATE, view / looked_at if looked_at else 0.0),
        )


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    if k <= 0:
        return 1.0
    return float(min(1.0, sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))))


def _rate(count: int, total: int, expected: float, full: bool, what: str, of: str) -> dict:
    p_value = binomial_tail(count, total, expected) if total else 1.0
    drifting = full and count >= RATE_FACTOR * expected * total and p_value < RATE_P
    return {"count": count, "of": total, "rate": count / total if total else None, "expected_rate": expected,
            "p_value": p_value, "drifting": bool(drifting),
            "says": f"{what} {count} of {total} {of} ({100 * count / max(total, 1):.0f}%) against "
                    f"{100 * expected:.0f}% expected (p = {p_value:.2g})"}


def assess(reference: Reference, passed: Iterable[float], outcomes: Iterable[str], window: int = DEFAULT_WINDOW,
           limit: float = DEFAULT_LIMIT, active: bool = False) -> dict[str, Any]:
    """The drift of the last `window` passed scores and outcomes (oldest first; only the last
    `window` of each count) against `reference`. `active`: an alarm is raised already, so the
    score shift must fall below CLEAR_SHARE x limit to clear it."""
    passed = np.asarray(list(passed)[-window:] if window else [], dtype=float)
    outcomes = list(outcomes)[-window:] if window else []
    band = reference.band
    scores: dict[str, Any] = {"count": int(passed.size), "reference_median": reference.median,
                              "reference_p90": reference.p90, "band": [reference.low, reference.high]}
    shift = None
    if passed.size:
        median, p90 = float(np.median(passed)), float(np.quantile(passed, 0.9))
        median_shift, p90_shift = (median - reference.median) / band, (p90 - reference.p90) / band
        shift = max(abs(median_shift), abs(p90_shift))
        scores.update(median=median, p90=p90, median_shift=median_shift, p90_shift=p90_shift, shift=shift,
                      says=f"passed scores: median {median:.4g} ({median_shift:+.2f} bands from "
                           f"{reference.median:.4g}), p90 {p90:.4g} ({p90_shift:+.2f} bands from {reference.p90:.4g})"
                           + (f" (only {passed.size} of {window} passed: not judged yet)" if passed.size < window else ""))
    bound = limit * (CLEAR_SHARE if active else 1.0)
    scores["drifting"] = bool(window and passed.size >= window and shift is not None and shift > bound)
    full = bool(window) and len(outcomes) >= window
    judged = [o for o in outcomes if o in (OK, FLAGGED)]
    flagged = _rate(judged.count(FLAGGED), len(judged), reference.false_reject_rate, full, "flagged", "parts")
    view = _rate(outcomes.count(VIEW), len(outcomes), reference.view_error_rate, full, "part-in-view errors",
                 "frames")
    reasons = [part["says"] for part in (scores, flagged, view) if part["drifting"]]
    if scores["drifting"]:
        reasons[0] += f"; limit {limit:g} bands of {band:.4g} (calibration p5-p95)"
    return {"window": window, "limit": limit, "threshold": reference.threshold, "drifting": bool(reasons),
            "judged": full, "parts": len(outcomes), "reasons": reasons, "scores": scores, "flagged": flagged,
            "view_errors": view}


def summary(assessment: dict) -> str:
    """One line: the alarm's reasons, how far the window is from full, or the measures."""
    if assessment["drifting"]:
        return "; ".join(assessment["reasons"])
    if not assessment.get("judged", True):
        return f"{assessment['parts']} of {assessment['window']} parts"
    parts = [assessment["scores"].get("says", "no passed scores yet"), assessment["flagged"]["says"]]
    if assessment["view_errors"]["count"]:
        parts.append(assessment["view_errors"]["says"])
    return "; ".join(parts)


def judgement(assessment: dict | None) -> tuple[str, str]:
    """What the summary page and `inspector stats` say of one station and model (`of_model`, or
    None when drift is off): the state ("DRIFT", "no drift", "not judged yet" while the window is
    not full, "not assessed") and its details."""
    if assessment is None:
        return "not assessed", "drift is off"
    if not assessment.get("available", True):
        return "not assessed", assessment["reason"]
    if assessment["drifting"]:
        return "DRIFT", summary(assessment)
    return ("no drift" if assessment.get("judged", True) else "not judged yet"), summary(assessment)


class Monitor:
    """The daemon's rolling view: the last `window` passed scores and outcomes of this station
    and model; `check` says when an alarm starts or clears."""

    def __init__(self, reference: Reference, window: int = DEFAULT_WINDOW, limit: float = DEFAULT_LIMIT):
        self.reference, self.window, self.limit = reference, window, limit
        self.passed: deque[float] = deque(maxlen=max(window, 1))
        self.outcomes: deque[str] = deque(maxlen=max(window, 1))
        self.active = False

    def add(self, verdict: str | None, score: float | None, reason: str | None = None) -> None:
        kind = outcome(verdict, reason)
        if kind is None:
            return
        self.outcomes.append(kind)
        if kind == OK and score is not None:
            self.passed.append(float(score))

    def check(self) -> tuple[str, dict] | None:
        """("start", assessment) when drift passes the limit, ("clear", assessment) when it is
        back within bounds, None when nothing changed (or the window is 0: drift is off)."""
        if not self.window:
            return None
        assessment = assess(self.reference, self.passed, self.outcomes, self.window, self.limit, self.active)
        if assessment["drifting"] != self.active:
            self.active = assessment["drifting"]
            return ("start" if self.active else "clear"), assessment
        return None


def windows(rows: Iterable[tuple[str | None, float | None, str | None]], window: int) -> tuple[list, list]:
    """The last `window` passed scores and outcomes, oldest first, of (verdict, score, error
    reason) rows given newest first."""
    passed, outcomes = [], []
    for verdict, score, reason in rows:
        kind = outcome(verdict, reason)
        if kind is not None and len(outcomes) < window:
            outcomes.append(kind)
        if kind == OK and score is not None and len(passed) < window:
            passed.append(float(score))
        if len(passed) >= window and len(outcomes) >= window:
            break
    return passed[::-1], outcomes[::-1]


def recent(store, station: str | None, model_id: int, window: int) -> tuple[list, list]:
    """`windows` of the newest rows one station judged with one model (a daemon's start)."""
    from sqlalchemy import select

    from .store import Inspection

    query = (select(Inspection.verdict, Inspection.score, Inspection.error_reason)
             .where(Inspection.station == station, Inspection.model_id == model_id, Inspection.status != "pending")
             .order_by(Inspection.id.desc()).limit(20 * window))
    with store.session() as s:
        return windows(s.execute(query), window)


def reference_at(path: str, fingerprint: str) -> Reference:
    """The `Reference` of the bundle at `path` (a model's row in the database says where it was
    loaded from), if it still holds the model of that fingerprint; `BundleError` saying why not."""
    from .bundle import read_metadata

    try:
        meta = read_metadata(path)
    except BundleError as exc:
        raise BundleError(f"cannot read the model's bundle: {exc}") from None
    if meta.fingerprint != fingerprint:
        raise BundleError(f"the bundle at {path} now holds another model ({meta.fingerprint}, not {fingerprint})")
    return Reference.of(meta)


def of_model(path: str | None, fingerprint: str | None, rows: list[tuple], window: int = DEFAULT_WINDOW,
             limit: float = DEFAULT_LIMIT, now=None) -> dict[str, Any]:
    """The drift section of `inspector stats` for one station and model: `rows` are its
    (verdict, score, error reason, scored time), newest first; the reference is the calibration
    of the bundle at `path` (where the model was loaded from), if it still holds that model.
    Also the last hour's flagged parts and part-in-view errors against the expected numbers."""
    from datetime import timedelta

    if not path or not fingerprint:
        return {"available": False, "reason": "no model recorded for these rows"}
    try:
        reference = reference_at(path, fingerprint)
    except BundleError as exc:
        return {"available": False, "reason": str(exc)}
    passed, outcomes = windows(((v, s, r) for v, s, r, _ in rows), window)
    result = {"available": True, "bundle": str(path), **assess(reference, passed, outcomes, window, limit)}
    if now is not None:
        hour = [outcome(v, r) for v, _, r, t in rows if t is not None and t >= now - timedelta(hours=1)]
        parts = sum(kind in (OK, FLAGGED) for kind in hour)
        frames = sum(kind is not None for kind in hour)
        result["last_hour"] = {
            "parts": parts, "flagged": hour.count(FLAGGED),
            "expected_flagged": parts * reference.false_reject_rate,
            "view_errors": hour.count(VIEW), "expected_view_errors": frames * reference.view_error_rate,
        }
    return result
