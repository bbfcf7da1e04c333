"""`inspector calibrate`: a bundle's threshold chosen again from good (and defect) images, or from
QA's reviews.

Every option is checked before any image is scored: a policy needing defects without defect
images or confirmed reviews, a parameter of another policy, an empty folder, good and defect
sets sharing an image (by content: a part cannot be both).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..bundle import Bundle, load_bundle, read_metadata, save_bundle
from ..calibration import Recalibration, recalibrate, recalibration_settings
from ..digest import file_sha256
from ..errors import InspectorError
from ..inference import Inferencer
from ..plots import score_histogram
from ..review import reviewed_scores, too_few_reviews
from .folders import folder_images, score_folder
from .progress import Progress, Warn, no_progress, no_warnings


@dataclass
class Calibrated:
    bundle: Bundle
    result: Recalibration
    plot: Path | None
    saved: bool
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        result = self.result
        return {"old_threshold": result.old, "threshold": result.new, "policy": result.policy,
                "good": len(result.good), "defect": len(result.defect), "confusion": result.after.to_dict(),
                "confusion_before": result.before.to_dict(), "histogram": str(self.plot) if self.plot else None,
                "saved": self.saved, "warnings": self.warnings}


def calibrate_bundle(model_dir: Path, good: Path | None = None, defect: Path | None = None, store=None,
                     db: str = "the database", policy: str | None = None, plot: Path | None = None, dry_run: bool = False,
                     progress: Progress = no_progress, warn: Warn = no_warnings, **parameters) -> Calibrated:
    """Choose `model_dir`'s threshold again and save it (unless `dry_run`). `store`: use QA's
    reviews of the parts this model judged (--from-reviews; `db` names it in messages). `parameters`: k, factor,
    false_reject_rate, target_recall. The histogram goes to `plot` (default: MODEL_DIR/calibration.png,
    none on a dry run)."""
    if good is None and store is None:
        raise InspectorError("give --good DIR, --from-reviews, or both")
    folders = {what: (folder, folder_images(folder, what)) for what, folder in (("good", good), ("defect", defect))
               if folder is not None}
    if len(folders) == 2:
        refuse_overlap(folders["good"][1], folders["defect"][1])
    meta, reviews, warnings = read_metadata(model_dir), None, []  # the bundle.json, without loading the model
    if store is not None:
        reviews = reviewed_scores(store, meta.fingerprint)
        if not any(len(scores) for scores in reviews):
            raise InspectorError(f"no reviewed parts judged by this model ({meta.fingerprint}) in {db}")
        few = too_few_reviews(len(reviews[0]) + len(reviews[1]),
                              f"parts of this model reviewed by QA ({len(reviews[0])} passed as good, "
                              f"{len(reviews[1])} confirmed defects)")
        if few:
            warn(few)
            warnings.append(few)
    defects_expected = defect is not None or (reviews is not None and len(reviews[1]) > 0)
    recalibration_settings(meta.pipeline, policy, defects_expected, store is not None, **parameters)
    bundle = load_bundle(model_dir)
    scores, sources = {"good": np.array([]), "defect": np.array([])}, []
    if folders:
        with Inferencer(bundle) as inferencer:
            for what, (folder, paths) in folders.items():
                scores[what] = score_folder(inferencer, paths, folder, what, progress, warn)[1]
                sources.append(f"{len(scores[what])} {what} images in {folder}")
    result = recalibrate(bundle, scores["good"], scores["defect"], sources, reviews, policy=policy, **parameters)
    if plot is None and not dry_run:
        plot = model_dir / "calibration.png"
    if plot is not None:
        score_histogram(plot, result.good, result.defect, result.new, f"{bundle.pipeline.name}: {result.policy}")
    if not dry_run:
        save_bundle(bundle)
    return Calibrated(bundle, result, plot, not dry_run, warnings)


def refuse_overlap(good: list[Path], defect: list[Path]) -> None:
    """`InspectorError` when an image is in both sets (the same content, under any name): a
    threshold set between a set and itself rejects every good part."""
    by_hash = {file_sha256(path): path for path in good}
    shared = [(by_hash[digest], path) for path in defect if (digest := file_sha256(path)) in by_hash]
    if shared:
        first_good, first_defect = shared[0]
        raise InspectorError(f"the good and defect images share {len(shared)} of {len(defect)} images (the same "
                             f"content: {first_good} and {first_defect}, say); a part cannot be both: check the "
                             "folders")
