"""The summary blueprint: counts per day and hour, drift per station, the score histogram, the
scores over time and the kinds of the defects QA confirmed (a Pareto chart and table per station)."""

from __future__ import annotations

import io
from datetime import timedelta

from flask import Blueprint, Response, abort, render_template, request

from ..drift import judgement
from ..review.stats import kind_pareto, station_stats, summary_counts
from ..review.text import NO_KIND
from ..store import Inspection, ModelRecord, utcnow
from .rows import store

MAX_DAYS = 3660

blueprint = Blueprint("summary", __name__)


def days_argument() -> int:
    days = request.args.get("days", 7, type=int)
    if not 1 <= days <= MAX_DAYS:
        abort(400, f"days must be between 1 and {MAX_DAYS}")
    return days


def recent(days: int) -> list[Inspection]:
    return [r for r in store().inspections(since=utcnow() - timedelta(days=days)) if r.status != "pending"]


@blueprint.get("/summary")
def summary():
    days = days_argument()
    counts = summary_counts(recent(days), utcnow() - timedelta(hours=24))
    since = utcnow() - timedelta(days=days)
    drift = [(r["station"], r["model"], r["drift"]) for r in station_stats(store(), since)]
    return render_template("summary.html", title="Summary", days=days, drift=drift, judgement=judgement,
                           kinds=kind_pareto(store(), since), no_kind=NO_KIND, **counts)


@blueprint.get("/summary/histogram.png")
def histogram():
    import numpy as np

    from ..plots import score_histogram

    rows = [r for r in recent(days_argument()) if r.score is not None]
    ok = np.array([r.score for r in rows if r.verdict == "ok"])
    flagged = np.array([r.score for r in rows if r.verdict == "defect"])
    threshold = rows[0].threshold if rows else 0.0  # newest first: the threshold in force now
    buffer = io.BytesIO()
    score_histogram(buffer, ok, flagged, threshold, "recent parts", labels=("passed", "flagged"))
    return Response(buffer.getvalue(), mimetype="image/png")


@blueprint.get("/summary/scores.png")
def score_chart():
    """Scores over time with the threshold, each model's calibration band and the median of
    the last passed scores (what drift is judged on)."""
    from ..drift import DEFAULT_WINDOW, reference_at
    from ..errors import BundleError
    from ..plots import score_timeline

    rows = sorted((r for r in recent(days_argument()) if r.score is not None and r.scored_at is not None),
                  key=lambda r: (r.scored_at, r.id))
    bands = {}
    for model_id in dict.fromkeys(r.model_id for r in rows if r.model_id is not None):
        with store().session() as s:
            model = s.get(ModelRecord, model_id)
        try:
            reference = reference_at(model.path, model.fingerprint)
        except BundleError:
            continue  # its bundle is gone or holds another model now: no band
        bands[model_id] = (reference.low, reference.high)
    buffer = io.BytesIO()
    score_timeline(buffer, [r.scored_at for r in rows], [r.score for r in rows],
                   [r.verdict == "defect" for r in rows], [r.threshold for r in rows], [r.model_id for r in rows],
                   bands, DEFAULT_WINDOW, "scores over time (UTC)")
    return Response(buffer.getvalue(), mimetype="image/png")


@blueprint.get("/summary/kinds.png")
def kinds_chart():
    """The Pareto chart of one station's confirmed defects by kind (`station` empty: parts
    without a station)."""
    from ..plots import pareto_chart

    days = days_argument()
    station = request.args.get("station", "")
    if len(station) > 200:
        abort(400, "station names have at most 200 characters")
    kinds = kind_pareto(store(), utcnow() - timedelta(days=days)).get(station, [])
    buffer = io.BytesIO()
    pareto_chart(buffer, [k["kind"] or NO_KIND for k in kinds], [k["count"] for k in kinds],
                 f"{station or '(no station)'}: confirmed defects by kind, last {days} days")
    return Response(buffer.getvalue(), mimetype="image/png")
