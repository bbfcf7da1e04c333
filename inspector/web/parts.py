"""The parts blueprint: the list of inspections, one part with its pictures, QA's label form."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for

from ..errors import ConfigError
from ..review import parse_since, review_state
from ..store import ModelRecord
from .pictures import PICTURES, picture_url
from .rows import MAX_ID, row_or_404, store
from .security import check_form_token

LIST_LIMIT = 200

blueprint = Blueprint("parts", __name__)


@blueprint.get("/")
def inspections():
    verdict = request.args.get("verdict", "")
    review = request.args.get("review", "")
    since_text = request.args.get("since", "")
    try:
        since = parse_since(since_text)
    except ConfigError as exc:
        abort(400, str(exc))
    limit = LIST_LIMIT
    rows = store().inspections(verdict=verdict or None, since=since,
                               reviewed=None if not review else review != "unreviewed", limit=None if review else limit)
    if review in ("confirmed", "dismissed"):
        rows = [r for r in rows if review_state(r) == review]
    rows = rows[:limit]
    return render_template("inspections.html", title="Inspections", rows=rows, verdict=verdict, review=review,
                           since=since_text, limit=limit, files={r.id: picture_url(r, "overlay") for r in rows},
                           states={r.id: review_state(r) for r in rows})


@blueprint.get("/inspections/<int:inspection_id>")
def inspection(inspection_id: int):
    row = row_or_404(inspection_id)
    with store().session() as s:
        model = s.get(ModelRecord, row.model_id) if row.model_id else None
    scale = max(row.score or 0, row.threshold or 0) * 1.25 or 1
    waiting = [r.id for r in store().inspections(flagged=True, reviewed=False, limit=50) if r.id != row.id]
    return render_template("inspection.html", title=f"#{row.id}", r=row, model=model, state=review_state(row),
                           token=current_app.config["FORM_TOKEN"], next_id=waiting[0] if waiting else None,
                           reviewer=request.cookies.get("reviewer", ""),
                           fill=min(100, 100 * (row.score or 0) / scale), thr=100 * (row.threshold or 0) / scale,
                           pictures=[(kind, picture_url(row, kind)) for kind in PICTURES])


@blueprint.post("/inspections/<int:inspection_id>/review")
def add_review(inspection_id: int):
    check_form_token(request.form.get("token", ""), current_app.config["FORM_TOKEN"])
    if not 0 < inspection_id <= MAX_ID:
        abort(404)
    label = request.form.get("label", "")
    reviewer = request.form.get("reviewer", "")[:200]
    try:
        store().add_review(inspection_id, label, reviewer=reviewer, note=request.form.get("note", "")[:2000])
    except LookupError:
        abort(404)
    except ValueError as exc:
        abort(400, str(exc))
    response = redirect(url_for("parts.inspection", inspection_id=inspection_id), code=303)
    response.set_cookie("reviewer", reviewer, samesite="Strict", httponly=True)
    return response
