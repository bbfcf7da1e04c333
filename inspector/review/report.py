"""The static HTML report of flagged parts (`inspector report`): one page from the template
templates/report.html, with its overlays copied beside it so the folder can be moved or mailed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from ..store import Inspection, utcnow
from .queries import confirmed_kind, review_state

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
BROWSER_SHOWS = (".png", ".jpg", ".jpeg", ".bmp")


def write_report(rows: list[Inspection], out: Path, title: str = "Flagged parts") -> Path:
    """A static HTML page of flagged parts: overlay (or photo), score, threshold, review state and the kind
    of a confirmed defect."""
    out.mkdir(parents=True, exist_ok=True)
    images = out / "images"
    images.mkdir(exist_ok=True)
    pictures = {}
    for r in rows:
        # A part without an overlay (a good part with no heat, `watch --pictures`) by its photo,
        # when a browser shows it, else by its heatmap.
        shown = [(r.overlay_path, "overlay"), (r.stored_path, "photo"), (r.heatmap_path, "heatmap")]
        for path, kind in shown:
            if path and os.path.isfile(path) and (kind != "photo" or r.status == "done"
                                                                and Path(path).suffix.lower() in BROWSER_SHOWS):
                copy = images / f"{r.id}_{kind}{Path(path).suffix.lower()}"
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
