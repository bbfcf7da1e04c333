"""Where the heat is, measured (`inspector evaluate --masks`): each judged image's score map
drawn back into the photo's own pixels, against its ground-truth mask; pixel AUROC and AUPRO
(`inspector.pixel_metrics`), per defect kind too, and a picture per image with the mask and the
hot regions outlined.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..cv_setup import cv2
from ..errors import InspectorError
from ..inference import Result
from ..pictures import save_picture, frame_overlay_image, on_frame
from ..pixel_metrics import pixel_quality
from ..scoring import hot_contours, score_map
from ..settings import ScoringConfig

OUTSIDE = np.float32(np.finfo(np.float32).min)  # a pixel the model did not look at: never hot
MASK_COLOUR = (0, 200, 0)  # the ground truth in green beside the magenta hot regions


def mask_for(masks: Path, image: Path) -> Path | None:
    """The mask of a defect image: the same name in `masks`, or MVTec's NAME_mask.png."""
    for candidate in (masks / image.name, masks / f"{image.stem}_mask.png"):
        if candidate.is_file():
            return candidate
    return None


def read_mask(path: Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A mask as booleans, resized (nearest) to `shape` (height, width) when the photo was."""
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise InspectorError(f"cannot read the mask {path}")
    if shape is not None and mask.shape != tuple(shape):
        mask = cv2.resize(mask, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return mask > 127


def read_kinds(path: Path) -> dict[str, str]:
    """A CSV of `file,kind` (a header row may name them): image name -> defect kind."""
    kinds = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.reader(fh):
            if len(row) >= 2 and row[0].strip() and row[0].strip().lower() != "file":
                kinds[Path(row[0].strip()).name] = row[1].strip()
    if not kinds:
        raise InspectorError(f"no file,kind rows in {path}")
    return kinds


def frame_map(result: Result, config: ScoringConfig, shape: tuple[int, int]) -> np.ndarray:
    """The result's score map (`scoring.score_map`) in a frame of `shape` (height, width) that
    shows what its photo shows (the photo, or its mask at another size): through the inverse
    pose transform; pixels outside the crop are below every pixel inside."""
    preview, preview_matrix = result.frame
    matrix = np.array(preview_matrix, np.float64)
    matrix[:, 0] *= preview.shape[1] / shape[1]  # frame pixels -> preview pixels -> crop pixels, per axis
    matrix[:, 1] *= preview.shape[0] / shape[0]
    hot = score_map(result.error_map, config)
    mapped = on_frame(hot, matrix, shape)
    inside = cv2.warpAffine(np.ones(hot.shape, np.uint8), matrix, (shape[1], shape[0]),
                            flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT)
    mapped[inside == 0] = OUTSIDE
    return mapped


def pixel_figures(good: list[Result], defect: list[Result], masks: Path, config: ScoringConfig,
                  threshold: float, kinds: dict[str, str] | None = None, pictures: Path | None = None,
                  heat_scale: float = 1.0, warn=lambda message: None) -> dict:
    """Pixel AUROC and AUPRO over the good (no defect pixel) and defect images judged, in each
    photo's own pixels; per kind with `kinds` (the good images with that kind's defects); with
    `pictures`, one JPEG per image: the photo, its heat, the hot regions above `threshold`
    (magenta) and the mask (green)."""
    maps, truths, kind_of, missing = [], [], [], []
    for label, results in (("good", good), ("defect", defect)):
        for r in results:
            path = mask_for(masks, r.path) if label == "defect" else None
            if label == "defect" and path is None:
                missing.append(str(r.path))
                continue
            truth = read_mask(path) if path else np.zeros((r.height, r.width), bool)
            maps.append(frame_map(r, config, truth.shape))
            truths.append(truth)
            kind_of.append(None if label == "good" else (kinds or {}).get(r.path.name, "unknown"))
            if pictures is not None:
                mask_picture(pictures / f"{label}_{r.path.stem}.jpg", r, truth, config, threshold, heat_scale)
    if missing:
        warn(f"{len(missing)} defect images have no mask in {masks} and are left out of the pixel figures")
    if not any(t.any() for t in truths):
        raise InspectorError(f"no defect pixels: no mask in {masks} names a judged defect image")
    overall = pixel_quality(maps, truths)
    # The same with only the crop's good pixels as possible false positives (the photo's others are
    # never hot, an easy 70% of a screw photo), and what the crop alone, heat all over it, scores.
    crops = [m > OUTSIDE for m in maps]
    in_crop = pixel_quality(maps, truths, counted=crops)
    crop_alone = pixel_quality([np.where(c, np.float32(1), OUTSIDE) for c in crops], truths)
    data = {"pixel_auroc": overall.pixel_auroc, "aupro": overall.aupro, "regions": overall.regions,
            "in_crop": {"pixel_auroc": in_crop.pixel_auroc, "aupro": in_crop.aupro},
            "crop_alone": {"pixel_auroc": crop_alone.pixel_auroc, "aupro": crop_alone.aupro},
            "masks_missing": missing}
    if kinds is not None:
        per_kind = {}
        for kind in sorted({k for k in kind_of if k is not None}):
            chosen = [i for i, k in enumerate(kind_of) if k in (None, kind)]
            if not any(truths[i].any() for i in chosen if kind_of[i] is not None):
                warn(f"no defect pixels in the masks of kind {kind}: no pixel figures for it")
                per_kind[kind] = {"pixel_auroc": None, "aupro": None, "regions": 0}
                continue
            q = pixel_quality([maps[i] for i in chosen], [truths[i] for i in chosen])
            per_kind[kind] = {"pixel_auroc": q.pixel_auroc, "aupro": q.aupro, "regions": q.regions}
        data["kinds"] = per_kind
    return data


def mask_picture(path: Path, result: Result, truth: np.ndarray, config: ScoringConfig, threshold: float,
                  heat_scale: float) -> None:
    """The photo with its heat and hot regions (as QA's page draws them) and the mask's outline."""
    preview, matrix = result.frame
    outlines = hot_contours(result.error_map, threshold, config, defect=result.verdict == "defect")
    picture = frame_overlay_image(preview, matrix, result.error_map, heat_scale, outlines)
    small = cv2.resize(truth.astype(np.uint8), (preview.shape[1], preview.shape[0]), interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(small, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(picture, contours, -1, MASK_COLOUR, 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_picture(path, picture)
