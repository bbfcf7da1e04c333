"""The pictures blueprint: an inspection's files, as the database names them, only under --out."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from flask import Blueprint, Response, abort, current_app, request, send_file, url_for
from sqlalchemy import or_, select

from ..cv_setup import cv2
from ..errors import ImageError
from ..formats import media_type, read_bytes
from ..formats.decoding import decode_frame, to_unit
from ..store import Inspection, Store
from .rows import row_or_404
from .security import FILE_POLICY

PICTURES = {"input": "stored_path", "overlay": "overlay_path", "upright": "crop_overlay_path",
            "heatmap": "heatmap_path"}
# The daemon's folders under its --out, each with a folder per day: OUT/heatmaps/<date>/<file>.
DAEMON_FOLDERS = ("heatmaps", "archive", "rejected", "duplicates")
SAMPLED = 20  # the newest inspections naming pictures that are looked for at start
# A photo in the list of parts (a part with no overlay: a good part with no heat) is this many
# pixels on its longer side, a JPEG made from the archived photo when asked for: a list of 200
# parts does not load 200 full photos.
THUMBNAIL_SIDE = 256
THUMBNAIL_QUALITY = 85

blueprint = Blueprint("pictures", __name__)


def _under(stored: str | None, out: Path) -> Path | None:
    if not stored:
        return None
    try:
        target = Path(stored).resolve()
        target.relative_to(out)
    except (ValueError, OSError):
        return None
    return target


def under_out(stored: str | None) -> Path | None:
    """The file a row names, if it lies under --out (resolved: no `..`, no symlink leading out)."""
    return _under(stored, current_app.config["OUT"])


def _daemon_out(stored: str) -> str:
    """The --out of the daemon that wrote the file `stored` (OUT/heatmaps/<date>/<file>), else its folder."""
    path = Path(stored)
    return str(path.parents[2] if len(path.parents) > 2 and path.parent.parent.name in DAEMON_FOLDERS
               else path.parent)


def pictures_notice(store: Store, out: Path) -> str | None:
    """None when the pictures the newest inspections name are found under `out` (any of them:
    old ones may have been cleaned away); else what is wrong, naming where the database says
    they are: a QA page started without the daemon's --out shows no picture at all."""
    columns = [getattr(Inspection, column) for column in PICTURES.values()]

    def newest() -> list[str]:
        with store.session() as s:
            rows = s.execute(select(*columns).where(or_(*(c.is_not(None) for c in columns)))
                             .order_by(Inspection.id.desc()).limit(SAMPLED)).all()
        # A photo the daemon left in its inbox (`--on-done keep`) lies outside --out by design:
        # only what the daemon wrote under its own folders counts.
        return [path for row in rows for path in row if path and _daemon_out(path) != str(Path(path).parent)]

    named = store.retry(newest, "look for the newest pictures")
    if not named or any((target := _under(path, out)) is not None and target.is_file() for path in named):
        return None
    elsewhere = [path for path in named if _under(path, out) is None]
    if not elsewhere:
        return (f"The pictures the database names are not found under {out}: none of those of the newest "
                "inspections is there (moved or deleted?).")
    folders = list(dict.fromkeys(_daemon_out(path) for path in elsewhere))
    where = ", ".join(f + ("" if os.path.isdir(f) else " (not a folder on this machine)") for f in folders[:3])
    return (f"The pictures the database names are not found under {out} (serve's --out): the newest inspections "
            f"have them under {where}. Give serve the daemon's output folder (--out or INSPECTOR_OUT).")


def picture_url(row: Inspection, kind: str) -> str | None:
    if under_out(getattr(row, PICTURES[kind])) is None:
        return None
    return url_for("pictures.picture", inspection_id=row.id, kind=kind)


def thumbnail_url(row: Inspection) -> str | None:
    """The list's picture of a judged part without an overlay: its photo, shrunk."""
    if row.status != "done" or under_out(row.stored_path) is None:
        return None
    return url_for("pictures.thumbnail", inspection_id=row.id)


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


@blueprint.get("/inspections/<int:inspection_id>/thumbnail")
def thumbnail(inspection_id: int):
    """A judged part's photo at THUMBNAIL_SIDE pixels on its longer side, in grey, as JPEG; only
    a photo under --out (as `picture`), read as the daemon reads its inbox (a regular file within
    the size limit, no symlink) and decoded as it decodes (its header checked first); a row not
    judged, or a file that is not such an image, is a 404. Revalidated by an ETag of the file's
    identity, size and times: a browser asks again and gets 304 without the photo being decoded
    again, and a file replaced, even by one of the same size and date, is shrunk anew."""
    row = row_or_404(inspection_id)
    target = under_out(row.stored_path) if row.status == "done" else None
    try:
        if target is None or not target.is_file():
            abort(404)
        stat = target.stat()
        etag = f"{inspection_id}-{stat.st_ino}-{stat.st_size}-{stat.st_mtime_ns}-{stat.st_ctime_ns}-{THUMBNAIL_SIDE}"
        if request.if_none_match.contains(etag):
            response = Response(status=304)
        else:
            response = Response(_thumbnail_jpeg(read_bytes(target, follow_symlinks=False)), mimetype="image/jpeg")
    except (OSError, ImageError):
        abort(404)
    response.set_etag(etag)
    response.headers["Cache-Control"] = "private, no-cache"
    response.headers["Content-Security-Policy"] = FILE_POLICY
    return response


def _thumbnail_jpeg(data: bytes) -> bytes:
    """The frame shrunk first (area averaging, in its own pixel type: a large 16-bit or float
    photo is not converted whole), then as 8-bit grey (float intensities clipped to [0, 1])."""
    frame = decode_frame(data)
    height, width = frame.shape
    factor = min(1.0, THUMBNAIL_SIDE / max(height, width))
    if factor < 1.0:
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    if frame.dtype != np.uint8:
        frame = (np.clip(to_unit(frame), 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, THUMBNAIL_QUALITY])
    if not ok:
        raise ImageError(None, "cannot encode the thumbnail")
    return encoded.tobytes()
