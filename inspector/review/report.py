"""The static HTML report of flagged parts (`inspector report`): one page from the template
templates/report.html, with its overlays (or heatmaps) copied beside it so the folder can be moved
or mailed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from ..store import Inspection, utcnow
from .queries import confirmed_kind, review_state

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def write_report(rows: list[Inspection], out: Path, title: str = "Flagged parts") -> Path:
    """A static HTML page of flagged parts: overlay (or heatmap), score, threshold, review state
    and the kind of a confirmed defect."""
    out.mkdir(parents=True, exist_ok=True)
    images = out / "images"
    images.mkdir(exist_ok=True)
    pictures = {}
    for r in rows:
        # A part without an overlay (a good part that showed no heat) by its heatmap: only the
        # daemon's own small pictures are copied, never the photo (the inbox's, with --on-done keep).
        for path, kind in ((r.overlay_path, "overlay"), (r.heatmap_path, "heatmap")):
            if path and os.path.isfile(path):
                copy = images / f"{r.id}_{kind}{Path(path).suffix}"
                shutil.copyfile(path, copy)
                pictures[r.id] = f"images/{copy.name}"
                break
    environment = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
    page = out / "index.html"
    page.write_text(environment.get_template("report.html").render(
        title=title, rows=rows, pictures=pictures, states={r.id: review_state(r) for r in rows},
        kinds={r.id: confirmed_kind(r) for r in rows}, generated=utcnow()),
        encoding="utf-8")
    return page
