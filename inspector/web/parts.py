"""The parts blueprint: the list of inspections, one part with its pictures, QA's label form."""

from __future__ import annotations

import os

from flask import Blueprint, Response, abort, current_app, redirect, render_template, request, url_for

from ..errors import ConfigError
from ..review import parse_since, review_state
from ..store import ModelRecord
from .pictures import PICTURES, picture_url, thumbnail_url
from .rows import MAX_ID, row_or_404, store
from .security import check_form_token

LIST_LIMIT = 200  # parts on one page of the list
MAX_PAGE = 10**6
LABELS = {"confirmed": "defect", "dismissed": "ok"}  # a review state -> the newest review's label
NOTE_LIMIT = 2000  # characters of a note kept; the reviewer is told when a note was cut

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
    try:
        page = int(request.args.get("page", "1"))
    except ValueError:
        abort(400, "page must be a whole number")
    if not 1 <= page <= MAX_PAGE:
        abort(400, f"page must be between 1 and {MAX_PAGE}")
    limit = LIST_LIMIT
    # One page in the database, and one row more to know whether a next page exists.
    rows = store().inspections(verdict=verdict or None, since=since,
                               reviewed=None if not review else review != "unreviewed",
                               label=LABELS.get(review), limit=limit + 1, offset=(page - 1) * limit)
    more, rows = len(rows) > limit, rows[:limit]
    pages = {"page": page, "previous": page - 1 if page > 1 else None, "next": page + 1 if more else None,
             "first": (page - 1) * limit + 1}
    # The header's "To review" link is this filter: the page says so.
    title = "To review" if (verdict, review) == ("defect", "unreviewed") else "Inspections"
    return render_template("inspections.html", title=title, rows=rows, verdict=verdict, review=review,
                           since=since_text, limit=limit, pages=pages,
                           # A part without an overlay (`watch --pictures`, a good part with no heat):
                           # shown by its photo, shrunk.
                           files={r.id: picture_url(r, "overlay") or thumbnail_url(r) for r in rows},
                           states={r.id: review_state(r) for r in rows})


# The part page's views of a part: key, picture kind, caption. The first is shown at first.
VIEWS = (("o", "overlay", "Photo"), ("h", "heatmap", "Heat"), ("u", "upright", "Upright part"),
         ("i", "input", "Original"))
QUEUE_LOOK = 50  # unreviewed flagged parts looked at for the next one to review


@blueprint.get("/qa.js")
def script():
    """The part page's keys, as a file: the page's policy runs no inline script."""
    path = os.path.join(current_app.root_path, current_app.template_folder, "qa.js")
    with open(path, encoding="utf-8") as fh:
        return Response(fh.read(), mimetype="text/javascript")


def score_fill(score: float | None, threshold: float | None) -> float:
    """How much of the score bar a score fills: one scale for every part, the threshold always
    at the middle, the bar full at twice the threshold."""
    if not score or not threshold or threshold <= 0:
        return 0.0
    return min(100.0, 50.0 * score / threshold)


def id_argument(name: str) -> int | None:
    value = request.args.get(name, "")
    return int(value) if value.isdigit() and len(value) < 12 and 0 < int(value) <= MAX_ID else None


def next_to_review(after: int) -> int | None:
    """The newest flagged part nobody has reviewed, other than `after`."""
    waiting = store().inspections(flagged=True, reviewed=False, limit=QUEUE_LOOK)
    return next((r.id for r in waiting if r.id != after), None)


@blueprint.get("/inspections/<int:inspection_id>")
def inspection(inspection_id: int):
    row = row_or_404(inspection_id)
    with store().session() as s:
        model = s.get(ModelRecord, row.model_id) if row.model_id else None
    cut = request.args.get("cut", "")
    cut = int(cut) if cut.isdigit() and len(cut) < 12 and int(cut) > NOTE_LIMIT else None
    # Shown first: the photo with its heat, else (a part written without pictures, `watch
    # --pictures`, or a good part with no heat to draw) the original photo, else the first view
    # that has a picture.
    pictures = {kind: picture_url(row, kind) for kind in PICTURES}
    first = sorted(VIEWS, key=lambda view: view[1] not in ("overlay", "input"))
    return render_template("inspection.html", title=f"#{row.id}", r=row, model=model, state=review_state(row),
                           note_cut=cut, note_limit=NOTE_LIMIT, done=request.args.get("done") == "1",
                           token=current_app.config["FORM_TOKEN"], next_id=next_to_review(row.id),
                           prev_id=id_argument("prev"), reviewer=request.cookies.get("reviewer", ""),
                           kinds=store().defect_kinds(row.station), fill=score_fill(row.score, row.threshold),
                           views=VIEWS, pictures=pictures,
                           shown=next((view for view in first if pictures[view[1]]), None))


@blueprint.post("/inspections/<int:inspection_id>/review")
def add_review(inspection_id: int):
    """QA's decision on a part. A `kind` without a `label` is a defect of that kind; with
    `advance` the answer leads to the next flagged part to review (this one a step back),
    without it back to this part, as scripts posting the form expect."""
    check_form_token(request.form.get("token", ""), current_app.config["FORM_TOKEN"])
    if not 0 < inspection_id <= MAX_ID:
        abort(404)
    kind = request.form.get("kind", "").strip()
    label = request.form.get("label", "") or ("defect" if kind else "")
    reviewer = request.form.get("reviewer", "")[:200]
    note = request.form.get("note", "")
    try:
        store().add_review(inspection_id, label, reviewer=reviewer, note=note[:NOTE_LIMIT], kind=kind or None)
    except LookupError:
        abort(404)
    except ValueError as exc:
        abort(400, str(exc))
    cut = {"cut": len(note)} if len(note) > NOTE_LIMIT else {}  # the page says the note was cut, and from what
    following = next_to_review(inspection_id) if request.form.get("advance") and not cut else None
    if following is not None:
        target = url_for("parts.inspection", inspection_id=following, prev=inspection_id)
    else:
        done = {"done": 1} if request.form.get("advance") and not cut else {}
        target = url_for("parts.inspection", inspection_id=inspection_id, **cut, **done)
    response = redirect(target, code=303)
    response.set_cookie("reviewer", reviewer, samesite="Strict", httponly=True)
    return response
