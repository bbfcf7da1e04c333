"""Folders of images to judge: listed, then scored with a bundle's inferencer."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InspectorError
from ..inference import Inferencer, Result
from ..formats import list_images
from .progress import Progress, Warn, no_progress, no_warnings


def folder_images(folder: Path, what: str) -> list[Path]:
    """The images in `folder` (a `what` folder, for the message); an error when there are none."""
    paths = list_images(folder)
    if not paths:
        raise InspectorError(f"no images found in {what} folder {folder}")
    return paths


def score_folder(inferencer: Inferencer, paths: list[Path], folder: Path, what: str,
                 progress: Progress = no_progress, warn: Warn = no_warnings, change_for=None,
                 unjudged: list | None = None, keep_maps: bool = False) -> tuple[list[Result], np.ndarray]:
    """The results and scores of every readable image of a folder (listed with `folder_images`);
    the images that cannot be judged are warned about (and collected in `unjudged` if given);
    `keep_maps`: each result keeps its error map and the photo's preview."""
    results = []
    with progress(len(paths), f"Scoring {what}") as bar:
        for result in inferencer.judge(paths, change_for=change_for, keep_maps=keep_maps):
            results.append(result)
            bar.update(1)
    for r in results:
        if r.verdict == "error":
            warn(f"skipped {r.path}: {r.error}")
            if unjudged is not None:
                unjudged.append({"path": str(r.path), "label": what, "error": r.error})
    scored = [r for r in results if r.score is not None]
    if not scored:
        raise InspectorError(f"no readable images in {folder}")
    return scored, np.array([r.score for r in scored])
