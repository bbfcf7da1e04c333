"""Detection quality on labelled images (`inspector evaluate`), and the report folder.

Scores come from the inferencer; this module turns them into metrics (ROC AUC with a
bootstrap interval, average precision, confusion at the bundle's threshold) and writes the
report: roc.png, histogram.png, scores.csv and metrics.json.
"""

from __future__ import annotations

import csv
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..calibration import Confusion, average_precision, bootstrap_auc_interval, confusion, roc_auc, roc_curve
from ..inference import Result
from ..plots import roc_plot, score_histogram
from ..errors import ConfigError
from ..nuisance_names import MOVING
from ..preprocess import Exposure
from .progress import Progress, Warn, no_progress, no_warnings


@dataclass
class Quality:
    auroc: float
    auroc_ci95: tuple[float, float]  # percentile bootstrap interval
    average_precision: float
    confusion: Confusion  # at the threshold given


def quality(good: np.ndarray, defect: np.ndarray, threshold: float) -> Quality:
    return Quality(roc_auc(good, defect), bootstrap_auc_interval(good, defect), average_precision(good, defect),
                   confusion(good, defect, threshold))


def exposure_jitter(seed: int) -> Callable[[Path], Exposure]:
    """A random change of lighting per image (gain 0.85-1.15, offset -15..15 grey levels),
    fixed by the seed and the file's name."""
    def exposure_for(path: Path) -> Exposure:
        rng = np.random.default_rng([seed, zlib.crc32(str(path.name).encode())])
        return Exposure(gain=float(rng.uniform(0.85, 1.15)), offset=float(rng.uniform(-15, 15)))

    return exposure_for


def nuisance_change(name: str, seed: int) -> Callable[[Path], Callable[[np.ndarray], np.ndarray]]:
    """The line nuisance `name` (`inspector.nuisance.NUISANCES`) for each image, its strength
    and placement fixed by the seed and the file's name."""
    from .. import nuisance

    if name not in nuisance.NUISANCES:
        raise ConfigError(f"unknown nuisance {name!r}; known: {', '.join(nuisance.NUISANCES)}")

    def change_for(path: Path):
        return lambda frame: nuisance.apply(name, frame, seed, Path(path).name)

    return change_for


def write_report(folder: Path, title: str, threshold: float, good_results: list[Result],
                 defect_results: list[Result], metrics: dict) -> dict:
    """roc.png, histogram.png, scores.csv (one row per image) and metrics.json (`metrics` and
    where each file is) in `folder`; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    good = np.array([r.score for r in good_results])
    defect = np.array([r.score for r in defect_results])
    fpr, tpr = roc_curve(good, defect)
    files = {
        "roc": str(roc_plot(folder / "roc.png", fpr, tpr, metrics["auroc"], title)),
        "histogram": str(score_histogram(folder / "histogram.png", good, defect, threshold, title)),
        "scores": str(folder / "scores.csv"),
        "metrics": str(folder / "metrics.json"),
    }
    with open(folder / "scores.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "score", "verdict"])
        for label, results in (("good", good_results), ("defect", defect_results)):
            for r in results:
                writer.writerow([str(r.path), label, f"{r.score:.8g}", r.verdict])
    (folder / "metrics.json").write_text(json.dumps({**metrics, "report": files}, indent=2, default=float))
    return files


def evaluate_folders(model_dir: Path, good: Path, defect: Path, report: Path | None = None,
                     exposure: bool = False, nuisance: str | None = None, jitter_seed: int = 0,
                     progress: Progress = no_progress, warn: Warn = no_warnings, masks: Path | None = None,
                     kinds: Path | None = None) -> dict:
    """`inspector evaluate`: score the good and defect folders with the bundle in `model_dir`
    (each image changed first by an exposure jitter or a line nuisance, if asked), and return
    the metrics (with the report's files when `report` is given). Images that cannot be judged
    are warned about and listed under "unjudged". With `masks` (a folder of the defect images'
    ground-truth masks) also pixel AUROC and AUPRO in the photos' own pixels; with `kinds` (a
    CSV of file,kind) recall per defect kind (and pixel figures per kind, with masks)."""
    from ..bundle import load_bundle
    from ..inference import Inferencer
    from .folders import folder_images, score_folder

    if exposure and nuisance:
        raise ConfigError("give --exposure-jitter or --nuisance, not both")
    from .pixel_evaluation import pixel_figures, read_kinds

    if masks is not None and nuisance in MOVING:
        raise ConfigError(f"--masks cannot be used with the nuisance {nuisance}: it moves the part, not its mask")
    kind_of = read_kinds(kinds) if kinds is not None else None
    good_paths, defect_paths = folder_images(good, "good"), folder_images(defect, "defect")
    bundle = load_bundle(model_dir)
    change_for = exposure_jitter(jitter_seed) if exposure else nuisance_change(nuisance, jitter_seed) if nuisance else None
    unjudged: list[dict] = []
    with Inferencer(bundle) as inferencer:
        good_results, good_scores = score_folder(inferencer, good_paths, good, "good", progress, warn, change_for,
                                                 unjudged, keep_maps=masks is not None)
        defect_results, defect_scores = score_folder(inferencer, defect_paths, defect, "defect", progress, warn,
                                                     change_for, unjudged, keep_maps=masks is not None)
    q = quality(good_scores, defect_scores, bundle.threshold)
    data = {
        "model_dir": str(model_dir), "pipeline": bundle.pipeline.name,
        "good": len(good_scores), "defect": len(defect_scores),
        "exposure_jitter": exposure, "nuisance": nuisance, "unjudged": unjudged,
        "auroc": q.auroc, "auroc_ci95": list(q.auroc_ci95), "average_precision": q.average_precision,
        "threshold": bundle.threshold, "confusion": q.confusion.to_dict(),
    }
    if kind_of is not None:
        data["kinds"] = recall_per_kind(defect_results, kind_of)
    if masks is not None:
        pixels = pixel_figures(good_results, defect_results, masks, bundle.pipeline.scoring, bundle.threshold, kind_of,
                               report / "pictures" if report is not None else None, bundle.heat_scale, warn)
        for kind, figures in pixels.pop("kinds", {}).items():
            data["kinds"][kind].update(figures)
        data.update(pixels)
    if report is not None:
        data["report"] = write_report(report, bundle.pipeline.name, bundle.threshold, good_results, defect_results,
                                      data)
    return data


def recall_per_kind(defect_results: list[Result], kind_of: dict[str, str]) -> dict[str, dict]:
    """Per defect kind (a defect image the CSV does not name is "unknown"): how many were judged,
    how many flagged at the bundle's threshold, and the recall."""
    kinds: dict[str, dict] = {}
    for r in defect_results:
        entry = kinds.setdefault(kind_of.get(r.path.name, "unknown"), {"defects": 0, "found": 0})
        entry["defects"] += 1
        entry["found"] += r.verdict == "defect"
    for entry in kinds.values():
        entry["recall"] = entry["found"] / entry["defects"]
    return dict(sorted(kinds.items()))
