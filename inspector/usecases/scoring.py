"""`inspector score`: judge image files (or the images in folders) with a bundle, and write each
one's pictures if asked."""

from __future__ import annotations

import logging
from pathlib import Path

from ..bundle import load_bundle
from ..errors import InspectorError
from ..formats import list_images
from ..inference import Inferencer
from ..pictures import picture_paths, picture_stems
from .progress import Progress, no_progress

log = logging.getLogger("inspector")


def score_files(model_dir: Path, paths: list[Path], heatmaps: Path | None = None, batch: int = 32,
                progress: Progress = no_progress) -> list[dict]:
    """One row per image, in order: path, verdict, score, threshold, error; with `heatmaps`, the
    pictures written there (images of the same name get their folders' names in front)."""
    files: list[Path] = []
    for path in paths:
        files.extend(list_images(path) if path.is_dir() else [path])
    if not files:
        raise InspectorError("no images found")
    bundle = load_bundle(model_dir)
    stems = picture_stems(files) if heatmaps is not None else {}
    rows = []
    with Inferencer(bundle) as inferencer, progress(len(files), "Scoring") as bar:
        for result in inferencer.judge(files, batch_size=batch, keep_maps=heatmaps is not None):
            row = {"path": str(result.path), "verdict": result.verdict, "score": result.score,
                   "threshold": bundle.threshold, "error": result.error}
            if heatmaps is not None and result.error_map is not None:
                row.update(_write_pictures(inferencer, heatmaps, stems[result.path], result))
            log.info("%s %s %s", result.path, result.verdict, result.score)
            rows.append(row)
            bar.update(1)
    return rows


def _write_pictures(inferencer: Inferencer, folder: Path, stem: str, result) -> dict:
    heat, over, crop = picture_paths(folder, stem)
    inferencer.write_pictures(result, heat, over, crop)
    return {"heatmap": str(heat), "overlay": str(over), "crop_overlay": str(crop)}
