"""The text tables the command line prints for QA: inspections, per-station statistics and the
kinds of confirmed defects."""

from __future__ import annotations

from ..store import Inspection
from .queries import confirmed_kind, review_state

NO_KIND = "(no kind)"  # a confirmed defect QA gave no kind


def table(rows: list[Inspection]) -> str:
    lines = [f"{'ID':>6}  {'received (UTC)':19}  {'verdict':7}  {'score':>10}  {'threshold':>10}  {'review':10}  "
             f"{'kind':16}  name"]
    for r in rows:
        score = f"{r.score:10.5g}" if r.score is not None else f"{'-':>10}"
        threshold = f"{r.threshold:10.5g}" if r.threshold is not None else f"{'-':>10}"
        lines.append(
            f"{r.id:6d}  {r.received_at:%Y-%m-%d %H:%M:%S}  {r.verdict or r.status:7}  {score}  {threshold}  "
            f"{review_state(r):10}  {(confirmed_kind(r) or '-')[:16]:16}  {r.source_name}"
            + (f"  ({r.error_reason})" if r.error_reason else "")
        )
    return "\n".join(lines)


def stats_table(rows: list[dict]) -> str:
    from ..drift import judgement

    lines = [f"{'station':16}  {'model':12}  {'images':>7}  {'defects':>7}  {'errors':>6}  {'no view':>7}  "
             f"{'images/s':>8}  {'p50':>9}  {'p90':>9}  {'p99':>9}"]
    for r in rows:
        p = r["score_percentiles"]
        rate = f"{r['images_per_s']:8.2f}" if r["images_per_s"] else f"{'-':>8}"
        pct = "  ".join(f"{p[k]:9.4g}" if k in p else f"{'-':>9}" for k in ("p50", "p90", "p99"))
        lines.append(f"{r['station'][:16]:16}  {r['model'][:12]:12}  {r['images']:7d}  {r['defects']:7d}  "
                     f"{r['errors']:6d}  {r['not_in_view']:7d}  {rate}  {pct}")
    said = set()
    for r in rows:
        for entry in r.get("outbox", []):
            if (r["station"], entry["output"]) in said:
                continue
            said.add((r["station"], entry["output"]))
            if entry["waiting"]:
                lines.append(f"{r['station']}: {entry['waiting']} verdicts not yet delivered to {entry['output']}, "
                             f"the oldest since {entry['oldest']} UTC")
            if entry["late"]:
                lines.append(f"{r['station']}: {entry['late']} verdicts delivered to {entry['output']} after the "
                             "line's deadline")
    said = set()
    for r in rows:
        if r.get("kinds") and r["station"] not in said:
            said.add(r["station"])
            lines.append(kinds_table(r["station"], r["kinds"]))
    for r in rows:
        if r.get("drift") is not None:
            state, details = judgement(r["drift"])
            said = state if state in ("DRIFT", "no drift") else f"drift {state}"  # drift not judged yet: ...
            lines.append(f"{r['station']} / {r['model']}: {said}: {details}")
    return "\n".join(lines)


def kinds_table(station: str, kinds: list[dict]) -> str:
    """A station's confirmed defects by kind, most frequent first (`stats.kind_pareto`)."""
    total = sum(k["count"] for k in kinds)
    lines = [f"{station or '(no station)'}: defects QA confirmed by kind ({total} part{'s' if total != 1 else ''})",
             f"  {'kind':30}  {'count':>6}  {'share':>6}  {'cumulative':>10}"]
    for k in kinds:
        lines.append(f"  {(k['kind'] or NO_KIND)[:30]:30}  {k['count']:6d}  {100 * k['share']:5.0f}%  "
                     f"{100 * k['cumulative']:9.0f}%")
    return "\n".join(lines)
