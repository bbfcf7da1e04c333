"""Per-station statistics: counts, throughput over the time daemons ran, score percentiles, drift
and the kinds of the defects QA confirmed; and the summary page's counts per day and hour."""

from __future__ import annotations

from datetime import datetime

from ..store import utcnow
from .queries import review_state


def station_stats(store, since: datetime | None = None, drift_window: int | None = None,
                  drift_limit: float | None = None) -> list[dict]:
    """Counts, throughput, score percentiles and drift for each (station, model) pair.

    The rate is images over the time daemons of that station and model ran (the union of their
    run spans, clipped to `since`): idle time between runs does not count, and two daemons
    sharing a station's inbox count their common time once. None when no run was recorded.
    Drift (`drift.of_model`): the newest rows against the calibration of the model's bundle
    (`drift_window` 0: none). Kinds: `kind_pareto` of the station.
    """
    import numpy as np
    from sqlalchemy import func, select

    from .. import drift
    from ..store import Inspection, ModelRecord, Run

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
    backlog = outbox_backlog(store)
    kinds = kind_pareto(store, since)
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
            # The station's verdicts its line outputs still owe (the same for each of its models).
            "outbox": backlog.get(station, []),
            # The kinds of the defects QA confirmed at the station (the same for each of its models).
            "kinds": kinds.get(station, []),
            "drift": drift.of_model(paths.get(fingerprint), fingerprint, items, window, limit, now) if window else None,
        })
    return result


def outbox_backlog(store) -> dict[str, list[dict]]:
    """Per station, each durable output's verdicts not yet delivered (how many, and since when
    the oldest waits, naive UTC ISO) and those it delivered after the line's deadline."""
    from sqlalchemy import case, func, select

    from ..store import OutboxEntry

    waiting = OutboxEntry.delivered_at.is_(None)
    query = (select(OutboxEntry.station, OutboxEntry.output, func.count(case((waiting, 1))),
                    func.min(case((waiting, OutboxEntry.created_at))), func.count(case((OutboxEntry.late, 1))))
             .group_by(OutboxEntry.station, OutboxEntry.output).order_by(OutboxEntry.station, OutboxEntry.output))
    backlog: dict[str, list[dict]] = {}
    with store.session() as s:
        for station, output, count, oldest, late in s.execute(query):
            backlog.setdefault(station or "", []).append(
                {"output": output, "waiting": count, "oldest": oldest.isoformat() if oldest else None, "late": late})
    return backlog


def kind_pareto(store, since: datetime | None = None) -> dict[str, list[dict]]:
    """Per station ("" for none), the parts received since `since` whose newest review confirms a
    defect, by the kind QA gave (None: no kind given): most frequent first, each with its count,
    share and cumulative share of the station's confirmed defects (a Pareto table)."""
    from sqlalchemy import func, select

    from ..store import Inspection, Review

    newest = select(func.max(Review.id)).group_by(Review.inspection_id)
    query = (select(Inspection.station, Review.kind, func.count())
             .join(Review, Review.inspection_id == Inspection.id)
             .where(Review.id.in_(newest), Review.label == "defect")
             .group_by(Inspection.station, Review.kind))
    if since:
        query = query.where(Inspection.received_at >= since)
    counts: dict[str, list[tuple[str | None, int]]] = {}
    with store.session() as s:
        for station, kind, count in s.execute(query):
            counts.setdefault(station or "", []).append((kind, count))
    pareto = {}
    for station, kinds in sorted(counts.items()):
        total, running, entries = sum(count for _, count in kinds), 0, []
        # Most frequent first; among equals the named kinds, by name, before "no kind".
        for kind, count in sorted(kinds, key=lambda k: (-k[1], k[0] is None, k[0] or "")):
            running += count
            entries.append({"kind": kind, "count": count, "share": count / total, "cumulative": running / total})
        pareto[station] = entries
    return pareto


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


def summary_counts(rows, day_ago: datetime) -> dict:
    """The summary page's figures for judged `rows`: per day (all) and per hour (since `day_ago`)
    the parts, defects and errors, with the totals and QA's review states."""
    per_day: dict[str, list[int]] = {}
    per_hour: dict[str, list[int]] = {}
    for r in rows:
        for key, table in ((r.received_at.strftime("%Y-%m-%d"), per_day),
                           (r.received_at.strftime("%Y-%m-%d %H:00"), per_hour if r.received_at >= day_ago else None)):
            if table is not None:
                counts = table.setdefault(key, [0, 0, 0])
                counts[0] += 1
                counts[1] += r.verdict == "defect"
                counts[2] += r.verdict == "error"
    defects = sum(r.verdict == "defect" for r in rows)
    states = [review_state(r) for r in rows]
    return {"total": len(rows), "defects": defects, "errors": sum(r.verdict == "error" for r in rows),
            "rate": 100 * defects / len(rows) if rows else 0.0, "confirmed": states.count("confirmed"),
            "dismissed": states.count("dismissed"), "per_day": sorted(per_day.items(), reverse=True),
            "per_hour": sorted(per_hour.items(), reverse=True)}
