"""QA's queries on the store: since when, the review state of a part, a row as data, and the
reviewed parts and scores that recalibration and updates learn from. Labels themselves are
stored by `Store.add_review`."""

from __future__ import annotations

from datetime import datetime, timedelta

from ..errors import ConfigError
from ..store import Inspection, utcnow


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


def confirmed_kind(row: Inspection) -> str | None:
    """The kind of defect QA confirmed (the newest review's), None when not confirmed or not said."""
    return row.reviews[-1].kind if review_state(row) == "confirmed" else None


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
        "kind": confirmed_kind(row),
        "regions": row.regions,
        "reviews": [
            {"label": r.label, "kind": r.kind, "reviewer": r.reviewer, "note": r.note,
             "created_at": r.created_at.isoformat()}
            for r in row.reviews
        ],
    }


MIN_REVIEWS = 5  # QA's decisions on fewer parts than this are too few to trust


def reviewed_parts(store, fingerprint: str) -> tuple[list[Inspection], list[Inspection]]:
    """Scored parts judged by the model with this fingerprint that QA reviewed, oldest first:
    (dismissed false alarms and parts QA passed, confirmed defects); the newest review counts."""
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    from ..store import ModelRecord

    query = (select(Inspection).join(ModelRecord, Inspection.model_id == ModelRecord.id)
             .where(ModelRecord.fingerprint == fingerprint, Inspection.score.is_not(None), Inspection.reviews.any())
             .options(selectinload(Inspection.reviews)).order_by(Inspection.id))
    with store.session() as s:
        rows = list(s.scalars(query))
    return ([r for r in rows if review_state(r) == "dismissed"], [r for r in rows if review_state(r) == "confirmed"])


def flagged_count(store, fingerprint: str) -> int:
    """How many parts the model with this fingerprint flagged (reviewed or not)."""
    from sqlalchemy import func, select

    from ..store import ModelRecord

    query = (select(func.count()).select_from(Inspection).join(ModelRecord, Inspection.model_id == ModelRecord.id)
             .where(ModelRecord.fingerprint == fingerprint, Inspection.verdict == "defect"))
    with store.session() as s:
        return int(s.scalar(query) or 0)


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


def region_text(region: dict) -> str:
    """One hot region in a line: where, how large, how hot."""
    x, y, w, h = region["box"]
    area = f"{region['area_px']:.0f} px" + (f" ({region['area_mm2']:.3g} mm2)" if region.get("area_mm2") else "")
    return f"{w}x{h} at ({x}, {y}), {area}, peak {region['peak']:.4g}, mean {region['mean']:.4g}"
