"""QA review: listing inspections and their review state, the static HTML report of flagged
parts, per-station statistics, and the reviewed scores recalibration uses.

Labels themselves are stored by `Store.add_review`.
"""

from __future__ import annotations

import html
import os
import shutil
from datetime import datetime, timedelta
from pathlib import Path

from .errors import ConfigError
from .store import Inspection, utcnow


def parse_since(text: str | None) -> datetime | None:
    """'2026-11-23', '2026-11-23T08:00', or a span back from now: '30m', '12h', '7d'."""
    if not text:
        return None
    units = {"m": "minutes", "h": "hours", "d": "days"}
    if text[-1:] in units and text[:-1].isdigit():
        try:
            return utcnow() - timedelta(**{units[text[-1]]: int(text[:-1])})
        except OverflowError:
            raise ConfigError(f"cannot read --since {text!r}: that is before the year 1") from None
    try:
        return datetime.fromisoformat(text).replace(tzinfo=None)
    except ValueError:
        raise ConfigError(f"cannot read --since {text!r}: use a date (2026-11-23) or a span (12h, 7d)") from None


def review_state(row: Inspection) -> str:
    """'confirmed' (defect), 'dismissed' (false alarm) or 'unreviewed'; the newest review wins."""
    if not row.reviews:
        return "unreviewed"
    return "confirmed" if row.reviews[-1].label == "defect" else "dismissed"


def as_dict(row: Inspection) -> dict:
    return {
        "id": row.id,
        "source_name": row.source_name,
        "source_path": row.source_path,
        "stored_path": row.stored_path,
        "status": row.status,
        "verdict": row.verdict,
        "score": row.score,
        "threshold": row.threshold,
        "error_reason": row.error_reason,
        "heatmap_path": row.heatmap_path,
        "overlay_path": row.overlay_path,
        "crop_overlay_path": row.crop_overlay_path,
        "received_at": row.received_at.isoformat() if row.received_at else None,
        "scored_at": row.scored_at.isoformat() if row.scored_at else None,
        "processing_ms": row.processing_ms,
        "model_id": row.model_id,
        "review": review_state(row),
        "reviews": [
            {"label": r.label, "reviewer": r.reviewer, "note": r.note, "created_at": r.created_at.isoformat()}
            for r in row.reviews
        ],
    }


def table(rows: list[Inspection]) -> str:
    lines = [f"{'ID':>6}  {'received (UTC)':19}  {'verdict':7}  {'score':>10}  {'threshold':>10}  {'review':10}  name"]
    for r in rows:
        score = f"{r.score:10.5g}" if r.score is not None else f"{'-':>10}"
        threshold = f"{r.threshold:10.5g}" if r.threshold is not None else f"{'-':>10}"
        lines.append(
            f"{r.id:6d}  {r.received_at:%Y-%m-%d %H:%M:%S}  {r.verdict or r.status:7}  {score}  {threshold}  "
            f"{review_state(r):10}  {r.source_name}" + (f"  ({r.error_reason})" if r.error_reason else "")
        )
    return "\n".join(lines)


def write_report(rows: list[Inspection], out: Path, title: str = "Flagged parts") -> Path:
    """A static HTML page of flagged parts: overlay, score, threshold and review state.

    Overlays are copied next to the page so the folder can be moved or mailed as it is.
    """
    out.mkdir(parents=True, exist_ok=True)
    images = out / "images"
    images.mkdir(exist_ok=True)
    cards = []
    for r in rows:
        picture = ""
        if r.overlay_path and os.path.isfile(r.overlay_path):
            copy = images / f"{r.id}_overlay{Path(r.overlay_path).suffix}"
            shutil.copyfile(r.overlay_path, copy)
            picture = f'<img src="images/{copy.name}" alt="overlay of inspection {r.id}">'
        notes = "".join(
            f"<li>{html.escape(v.label)} by {html.escape(v.reviewer or 'unknown')}: {html.escape(v.note)}</li>"
            for v in r.reviews
        )
        cards.append(
            f'<div class="card {r.verdict} {review_state(r)}">{picture}'
            f"<h2>#{r.id} {html.escape(r.source_name)}</h2>"
            f"<p>score <b>{r.score:.5g}</b> / threshold {r.threshold:.5g}</p>"
            f"<p>received {r.received_at:%Y-%m-%d %H:%M:%S} UTC</p>"
            f'<p class="state">{review_state(r)}</p>'
            + (f"<ul>{notes}</ul>" if notes else "") + "</div>"
        )
    page = out / "index.html"
    page.write_text(
        "<!doctype html><html><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:sans-serif;margin:1.5em;background:#f4f4f4}"
        ".grid{display:flex;flex-wrap:wrap;gap:1em}"
        ".card{background:#fff;padding:.8em;border-radius:6px;width:240px;border-top:5px solid #c33}"
        ".card.ok{border-top-color:#999}.card.dismissed{border-top-color:#393}.card.confirmed{border-top-color:#800}"
        ".card img{width:240px;height:240px}.card h2{font-size:1em;word-break:break-all}"
        ".state{font-weight:bold;text-transform:uppercase;font-size:.8em}"
        "</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{len(rows)} parts, generated {utcnow():%Y-%m-%d %H:%M} UTC</p>"
        f'<div class="grid">{"".join(cards) or "<p>No flagged parts.</p>"}</div></body></html>\n',
        encoding="utf-8",
    )
    return page


def station_stats(store, since: datetime | None = None, drift_window: int | None = None,
                  drift_limit: float | None = None) -> list[dict]:
    """Counts, throughput, score percentiles and drift for each (station, model) pair.

    The rate is images over the time daemons of that station and model ran (the union of their
    run spans, clipped to `since`): idle time between runs does not count, and two daemons
    sharing a station's inbox count their common time once. None when no run was recorded.
    Drift (`drift.of_model`): the newest rows against the calibration of the model's bundle
    (`drift_window` 0: none).
    """
    import numpy as np
    from sqlalchemy import func, select

    from . import drift
    from .store import Inspection, ModelRecord, Run

    window = drift.DEFAULT_WINDOW if drift_window is None else drift_window
    limit = drift.DEFAULT_LIMIT if drift_limit is None else drift_limit
    query = (select(Inspection.station, ModelRecord.name, ModelRecord.fingerprint, Inspection.verdict,
                    Inspection.score, Inspection.scored_at, Inspection.error_reason)
             .outerjoin(ModelRecord, Inspection.model_id == ModelRecord.id)
             .where(Inspection.status != "pending").order_by(Inspection.id.desc()))
    if since:
        query = query.where(Inspection.received_at >= since)
    runs = (select(Run.station, ModelRecord.name, ModelRecord.fingerprint, Run.started_at,
                   func.coalesce(Run.stopped_at, Run.last_seen_at))
            .outerjoin(ModelRecord, Run.model_id == ModelRecord.id))
    groups: dict[tuple, list] = {}
    spans: dict[tuple, list] = {}
    with store.session() as s:
        for station, model, fingerprint, verdict, score, scored_at, reason in s.execute(query):
            groups.setdefault((station or "", model or "", fingerprint or ""), []).append(
                (verdict, score, reason, scored_at))
        for station, model, fingerprint, started, ended in s.execute(runs):
            spans.setdefault((station or "", model or "", fingerprint or ""), []).append((started, ended))
        paths = dict(s.execute(select(ModelRecord.fingerprint, ModelRecord.path)).all())
    result = []
    now = utcnow()
    for key, items in sorted(groups.items()):
        station, model, fingerprint = key
        scores = np.array([score for _, score, _, _ in items if score is not None])
        times = [t for *_, t in items if t is not None]
        running = _covered_seconds(spans.get(key, []), since, now) if key in spans else None
        result.append({
            "station": station, "model": model, "fingerprint": fingerprint,
            "images": len(items),
            "defects": sum(v == "defect" for v, *_ in items),
            "errors": sum(v == "error" for v, *_ in items),
            # Of those, frames where the part could not be judged: none found, cut by the edge,
            # two parts, the wrong size.
            "not_in_view": sum(v == "error" and (r or "").startswith(drift.VIEW_ERRORS) for v, _, r, _ in items),
            "first": min(times).isoformat() if times else None,
            "last": max(times).isoformat() if times else None,
            "running_s": running,
            "images_per_s": len(items) / running if running else None,
            "score_percentiles": {f"p{q}": float(np.percentile(scores, q)) for q in (50, 90, 99)} if scores.size else {},
            "drift": drift.of_model(paths.get(fingerprint), fingerprint, items, window, limit, now) if window else None,
        })
    return result


def _covered_seconds(spans: list[tuple[datetime, datetime]], since: datetime | None, now: datetime) -> float:
    """Seconds covered by at least one (start, end) span, within [since, now]."""
    clipped = sorted((max(start, since) if since else start, min(end, now)) for start, end in spans)
    total, reach = 0.0, None
    for start, end in clipped:
        if reach is not None and start < reach:
            start = reach
        if end > start:
            total += (end - start).total_seconds()
            reach = end if reach is None else max(reach, end)
    return total


def stats_table(rows: list[dict]) -> str:
    from .drift import summary

    lines = [f"{'station':16}  {'model':12}  {'images':>7}  {'defects':>7}  {'errors':>6}  {'no view':>7}  "
             f"{'images/s':>8}  {'p50':>9}  {'p90':>9}  {'p99':>9}"]
    for r in rows:
        p = r["score_percentiles"]
        rate = f"{r['images_per_s']:8.2f}" if r["images_per_s"] else f"{'-':>8}"
        pct = "  ".join(f"{p[k]:9.4g}" if k in p else f"{'-':>9}" for k in ("p50", "p90", "p99"))
        lines.append(f"{r['station'][:16]:16}  {r['model'][:12]:12}  {r['images']:7d}  {r['defects']:7d}  "
                     f"{r['errors']:6d}  {r['not_in_view']:7d}  {rate}  {pct}")
    for r in rows:
        d = r.get("drift")
        if d is not None:
            state = ("DRIFT: " if d["drifting"] else "no drift: ") + summary(d) if d["available"] else \
                f"drift not assessed: {d['reason']}"
            lines.append(f"{r['station']} / {r['model']}: {state}")
    return "\n".join(lines)


MIN_REVIEWS = 5  # QA's decisions on fewer parts than this are too few to trust


def reviewed_parts(store, fingerprint: str) -> tuple[list[Inspection], list[Inspection]]:
    """Scored parts judged by the model with this fingerprint that QA reviewed, oldest first:
    (dismissed false alarms and parts QA passed, confirmed defects); the newest review counts."""
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    from .store import ModelRecord

    query = (select(Inspection).join(ModelRecord, Inspection.model_id == ModelRecord.id)
             .where(ModelRecord.fingerprint == fingerprint, Inspection.score.is_not(None), Inspection.reviews.any())
             .options(selectinload(Inspection.reviews)).order_by(Inspection.id))
    with store.session() as s:
        rows = list(s.scalars(query))
    return ([r for r in rows if review_state(r) == "dismissed"], [r for r in rows if review_state(r) == "confirmed"])


def reviewed_scores(store, fingerprint: str):
    """The scores of `reviewed_parts`: (dismissed, confirmed) arrays."""
    import numpy as np

    dismissed, confirmed = reviewed_parts(store, fingerprint)
    return (np.array([r.score for r in dismissed], dtype=float), np.array([r.score for r in confirmed], dtype=float))


def too_few_reviews(have: int, what: str, needed: int = MIN_REVIEWS) -> str | None:
    """A sentence saying `have` `what` are too few to trust, or None when there are enough
    (`calibrate --from-reviews` warns with it, `update` refuses)."""
    if have >= needed:
        return None
    return (f"only {have} {what}; at least {needed} are needed to trust QA's reviews: review more flagged "
            "parts (inspector review list --flagged --unreviewed)")
