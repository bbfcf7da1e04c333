"""The pictures blueprint: an inspection's files, as the database names them, only under --out."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, abort, current_app, send_file, url_for

from ..formats import media_type
from ..store import Inspection
from .rows import row_or_404
from .security import FILE_POLICY

PICTURES = {"input": "stored_path", "overlay": "overlay_path", "upright": "crop_overlay_path",
            "heatmap": "heatmap_path"}

blueprint = Blueprint("pictures", __name__)


def under_out(stored: str | None) -> Path | None:
    """The file a row names, if it lies under --out (resolved: no `..`, no symlink leading out)."""
    if not stored:
        return None
    try:
        target = Path(stored).resolve()
        target.relative_to(current_app.config["OUT"])
    except (ValueError, OSError):
        return None
    return target


def picture_url(row: Inspection, kind: str) -> str | None:
    if under_out(getattr(row, PICTURES[kind])) is None:
        return None
    return url_for("pictures.picture", inspection_id=row.id, kind=kind)


def _image_type(path: Path) -> str | None:
    """What a picture is served as, by its first bytes (the signatures of the formats table);
    None: not an image, so not served as one."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    return media_type(head)


@blueprint.get("/inspections/<int:inspection_id>/picture/<kind>")
def picture(inspection_id: int, kind: str):
    """A picture of an inspection, as the database names it; only under --out (no `..`, no
    symlink leading out). An image by its content is shown; anything else (a script dropped
    into the inbox and rejected) is only downloadable."""
    if kind not in PICTURES:
        abort(404)
    target = under_out(getattr(row_or_404(inspection_id), PICTURES[kind]))
    try:
        if target is None or not target.is_file():
            abort(404)
        mimetype = _image_type(target)
    except OSError:
        abort(404)
    if mimetype is None:
        response = send_file(target, mimetype="application/octet-stream", as_attachment=True,
                             download_name=target.name)
    else:
        response = send_file(target, mimetype=mimetype)
    response.headers["Content-Security-Policy"] = FILE_POLICY
    return response
