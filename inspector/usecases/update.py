"""`inspector update MODEL --from-reviews`: a new bundle that learns from QA's decisions.

The parts QA dismissed as false alarms (their archived images) join the images MODEL was
trained on (the folder its bundle records, and what earlier updates added); the new model is
trained with MODEL's pipeline and seed, and calibrated as training does (the pipeline's
threshold policy on good images it did not learn from). The confirmed defects, scored by the
new model, are kept as its calibration defect scores (and choose the threshold when MODEL's
policy needs defects). The new bundle records its parent's fingerprint and what was added.

It is built in a hidden folder next to NEW_DIR and renamed into place when complete: a bundle
is never overwritten (a daemon may be using it) and never half written. It refuses to start
when QA dismissed too few false alarms to trust.

Reviews can be wrong (a reviewer passing real defects teaches the new model that they are
good). Two signs of it make the update refuse, unless forced (then they are warnings): QA
dismissed more than half of the parts the model flagged, or the new model still flags more
than a few (`STILL_FLAGGED`) of the parts QA called good, which it was trained on.
"""

from __future__ import annotations

import math
import os
import secrets
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from .. import models
from ..bundle import META_FILE, MODEL_FILE, Bundle, load_bundle, read_metadata, save_bundle
from ..calibration import choose_threshold, confusion, needs_defects, threshold_info
from ..errors import ConfigError, TrainingError
from ..formats import list_images
from ..names import text_to_path
from ..review import MIN_REVIEWS, flagged_count, reviewed_parts, too_few_reviews
from ..settings import Pipeline
from .progress import Progress, Warn, no_progress, no_warnings

# The new model may still flag this share of the parts QA dismissed (at least one) before the
# reviews are doubted.
STILL_FLAGGED = 0.10
FORCE_HINT = "check the reviews (inspector review list --label ok), or give --force to update anyway"


@dataclass(frozen=True)
class Part:
    """A part QA reviewed: its inspection, the score and verdict the parent model gave it, its image."""

    inspection: int
    score: float
    verdict: str
    image: Path


@dataclass
class Plan:
    """Everything an update needs, checked before any image is read."""

    parent: Bundle  # metadata only
    out: Path
    folder: Path
    paths: list[Path]  # the training images: the folder, earlier additions, the dismissed parts
    dismissed: list[Part]
    confirmed: list[Part]
    pipeline: Pipeline  # as trained: the parent's, with an adaptive policy if the parent's needs defects
    seed: int
    epochs: int | None
    record: dict
    force: bool = False  # doubts about the reviews are warnings, not refusals
    warnings: list[str] = field(default_factory=list)


def plan(model_dir: Path, out: Path, store, good_dir: Path | None = None, min_reviews: int = MIN_REVIEWS,
         force: bool = False) -> Plan:
    """Check the update of `model_dir` into `out` from the reviews in `store`: `TrainingError`
    or `ConfigError` saying what is wrong, before anything is trained."""
    parent = read_metadata(model_dir)
    if os.path.realpath(out) == os.path.realpath(model_dir):
        raise ConfigError(f"--out {out} is the model being updated: update writes a new bundle and never "
                          "overwrites one (a daemon may be using it); give a new directory")
    if out.exists() or out.is_symlink():
        if (out / META_FILE).exists() or (out / MODEL_FILE).exists():
            raise ConfigError(f"--out {out} already holds a model bundle: update never overwrites one; give a new "
                              "directory")
        if not out.is_dir() or any(out.iterdir()):
            raise ConfigError(f"--out {out} exists and is not an empty directory; give a new directory")
    dismissed_rows, confirmed_rows = reviewed_parts(store, parent.fingerprint)
    warnings: list[str] = []
    dismissed = _with_images(dismissed_rows, warnings)
    confirmed = _with_images(confirmed_rows, warnings)
    false_alarms = sum(p.verdict == "defect" for p in dismissed)
    few = too_few_reviews(false_alarms, f"false alarms of model {parent.fingerprint} dismissed by QA with their "
                                        f"image still there (flagged parts labelled ok)", min_reviews)
    if few:
        raise TrainingError(f"{few}; or lower --min-reviews")
    flagged = flagged_count(store, parent.fingerprint)
    if false_alarms > flagged / 2:
        doubt = (f"QA dismissed {false_alarms} of the {flagged} parts model {parent.fingerprint} flagged, more than "
                 "half: if real defects were passed, the new model learns them as good")
        if not force:
            raise TrainingError(f"{doubt}; {FORCE_HINT}")
        warnings.append(doubt)
    if not confirmed:
        warnings.append(f"QA confirmed none of model {parent.fingerprint}'s flags: the new model's recall on defects "
                        "cannot be shown")
    folder = good_dir or parent.training.get("folder")
    if folder is None:
        raise TrainingError(f"{model_dir} does not record the folder it was trained on (trained by an older "
                            "inspector): give it with --good-dir")
    folder = Path(folder)
    if not folder.is_dir():
        raise TrainingError(f"the training folder {folder} (recorded in {model_dir}) is not there: give it with "
                            "--good-dir")
    earlier = [Path(a["path"]) for a in parent.training.get("added", [])]
    for path in earlier:
        if not path.is_file():
            warnings.append(f"an image an earlier update added is gone, left out: {path}")
    added = [a for a in parent.training.get("added", []) if Path(a["path"]).is_file()]
    added += [{"inspection": p.inspection, "path": str(p.image)} for p in dismissed]
    paths = list(dict.fromkeys([*list_images(folder), *(Path(a["path"]) for a in added)]))
    spec = models.get(parent.pipeline.model.architecture)
    epochs = None  # as many as the parent ran, for an architecture trained in epochs
    if spec.planned_epochs(parent.pipeline.model.settings) is not None:
        epochs = parent.training.get("epochs") or None
    pipeline = parent.pipeline
    if needs_defects(pipeline.threshold.policy):
        if not confirmed:
            raise TrainingError(f"{model_dir}'s threshold policy {pipeline.threshold.policy!r} needs defects, and QA "
                                "confirmed none of this model's flags (with their image still there)")
        pipeline = pipeline.replace("threshold", policy="mean_std")  # for training only: chosen again with defects
    record = {"folder": str(folder.resolve()), "parent": parent.fingerprint, "added": added,
              "reviews": {"false_alarms": false_alarms, "dismissed": len(dismissed), "confirmed": len(confirmed)}}
    return Plan(parent, out, folder, paths, dismissed, confirmed, pipeline, int(parent.training.get("seed", 0)),
                epochs, record, force, warnings)


def _with_images(rows, warnings: list[str]) -> list[Part]:
    """The reviewed rows whose image is still where the daemon put it."""
    parts = []
    for row in rows:
        image = Path(text_to_path(row.stored_path)) if row.stored_path else None
        if image is None or not image.is_file():
            warnings.append(f"the image of inspection {row.id} is not there any more ({row.stored_path}); left out")
            continue
        parts.append(Part(row.id, float(row.score), row.verdict or "", image))
    return parts


@contextmanager
def staging(out: Path) -> Iterator[Path]:
    """A hidden folder next to `out` to build the bundle in; removed unless `finish` moved it."""
    out = Path(os.path.abspath(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    folder = out.parent / f".{out.name}.partial-{secrets.token_hex(4)}"
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def finish(plan: Plan, built: Path) -> dict:
    """After training into `built`: score the reviewed parts with the new model, keep the
    confirmed defects' scores (choosing the threshold with them if the policy needs defects),
    save, move the bundle into place; returns the before / after figures."""
    from ..inference import Inferencer

    bundle = load_bundle(built)  # as a daemon will: checked
    with Inferencer(bundle) as inferencer:
        dismissed = _scores(inferencer, plan.dismissed)
        confirmed = _scores(inferencer, plan.confirmed)
    if plan.pipeline is not plan.parent.pipeline:  # the parent's policy needs defects
        good = np.asarray(bundle.calibration["good_scores"], float)
        bundle.pipeline = plan.parent.pipeline
        bundle.threshold = choose_threshold(good, confirmed[~np.isnan(confirmed)], bundle.pipeline.threshold)
        bundle.threshold_info = threshold_info(bundle.pipeline.threshold, f"{bundle.threshold_info['source']}; "
                                               f"{int((~np.isnan(confirmed)).sum())} defects confirmed by QA")
    bundle.calibration["defect_scores"] = [float(s) for s in confirmed if not np.isnan(s)]
    old, new = plan.parent.threshold, bundle.threshold

    def figures(parts: list[Part], after: np.ndarray) -> dict:
        judged = ~np.isnan(after)
        before = np.array([p.score for p in parts], float)
        return {"count": len(parts), "judged_after": int(judged.sum()),
                "flagged_before": int((before > old).sum()), "flagged_after": int((after[judged] > new).sum())}

    gone = figures(plan.dismissed, dismissed)
    kept = figures(plan.confirmed, confirmed)
    kept["recall_before"] = confusion([], [p.score for p in plan.confirmed], old).recall if plan.confirmed else None
    kept["recall_after"] = (confusion([], confirmed[~np.isnan(confirmed)], new).recall
                            if kept["judged_after"] else None)
    allowed = max(1, math.floor(STILL_FLAGGED * gone["count"]))
    if gone["flagged_after"] > allowed:
        doubt = (f"the new model still flags {gone['flagged_after']} of the {gone['count']} parts QA dismissed, "
                 f"though it was trained on them (at most {allowed} expected): they may be real defects")
        if not plan.force:
            raise TrainingError(f"{doubt}; nothing saved; {FORCE_HINT}")
        plan.warnings.append(doubt)
    save_bundle(bundle)
    try:
        os.rename(built, plan.out)  # onto nothing, or an empty directory; never over a bundle
    except OSError as exc:
        raise ConfigError(f"cannot move the new bundle to {plan.out}: {exc.strerror or exc}") from None
    return {"model_dir": str(plan.out), "parent": plan.parent.fingerprint, "fingerprint": bundle.fingerprint,
            "pipeline": bundle.pipeline.name, "trained_on": bundle.training["images"],
            "added": len(plan.record["added"]), "threshold_before": old, "threshold": new,
            "policy": bundle.threshold_info["policy"], "dismissed": gone, "confirmed": kept,
            "warnings": plan.warnings}


def _scores(inferencer, parts: list[Part]) -> np.ndarray:
    """Each part's score under the new model; NaN where it cannot be judged any more."""
    results = inferencer.judge([p.image for p in parts])
    return np.array([r.score if r.score is not None else np.nan for r in results], float)


def update_from_reviews(model_dir: Path, out: Path, store, good_dir: Path | None = None,
                        min_reviews: int = MIN_REVIEWS, progress: Progress = no_progress,
                        warn: Warn = no_warnings, force: bool = False) -> dict:
    """`inspector update --from-reviews`: `plan`, train in a staging folder (`training.train_folder`),
    `finish`; returns `finish`'s figures with the training summary under "trained"."""
    from .training import train_folder

    planned = plan(model_dir, out, store, good_dir, min_reviews, force)
    for warning in planned.warnings:
        warn(warning)
    with staging(out) as building:
        _, summary = train_folder(planned.paths, building, planned.pipeline, planned.seed, planned.epochs,
                                  planned.record, progress, warn)
        told = len(planned.warnings)
        result = finish(planned, building)
        for warning in planned.warnings[told:]:  # doubts found once the new model judged (--force)
            warn(warning)
    result["trained"] = summary
    return result
