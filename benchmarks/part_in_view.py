"""How many good frames the screw pipeline cannot judge ("part not in view", "no part found")
as photographed, under each line nuisance, and under vignetting steeper than the nuisance's:
counted for the full search (`locate_part`) and for its first look alone (the part segmented
under `background_light`, without the second look under `corner_light`). No model is needed.
Prints JSON.

    PYTHONPATH=. python benchmarks/part_in_view.py ../shared/data/mvtec_screw/train/good --seeds 0 1 2
"""

import argparse
import json
from pathlib import Path

import numpy as np

from inspector import nuisance
from inspector.errors import ImageError
from inspector.formats import list_images
from inspector.models.pipeline_files import resolve_pipeline
from inspector.lighting import background_light, evened
from inspector.preprocess import POSE_WORKING_SIZE, _part_blob, locate_part, read_frame, shrink

# Light falling off to this share of the centre's in the corners: the line nuisance draws
# 0.55-0.75; below that, steeper than it.
CORNERS = (0.55, 0.45, 0.35)


def vignetted(frame: np.ndarray, corner: float, rng: np.random.Generator) -> np.ndarray:
    """`frame` with light falling off towards the corners to `corner` of its centre's (as the
    `light-radial` nuisance draws it, at a fixed strength)."""
    h, w = frame.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = rng.uniform(0.4, 0.6, 2)
    r2 = ((xs / (w - 1) - cx) ** 2 + (ys / (h - 1) - cy) ** 2) / 0.5
    return np.clip(frame * (1 - (1 - corner) * r2), 0, 1).astype(np.float32)


def refusals(frame: np.ndarray, config) -> tuple[str | None, str | None]:
    """Why the full search and the first look alone refuse `frame` (None: found). The first
    look is the full search's first step: the frame evened by `background_light` when the
    pipeline flattens the light, as it is otherwise."""
    reasons = []
    scale = min(1.0, POSE_WORKING_SIZE / max(frame.shape))
    small = shrink(frame, scale) if scale < 1 else frame
    first = evened(small, background_light(small)) if config.flatten_light else small
    for look in (lambda: locate_part(frame, config), lambda: _part_blob(first, config.check_view, None)):
        try:
            look()
            reasons.append(None)
        except ImageError as error:
            reasons.append(error.reason)
    return reasons[0], reasons[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="good photos of the part")
    parser.add_argument("--pipeline", default="screw", help="a shipped pipeline's name or a pipeline file")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="nuisance seeds")
    args = parser.parse_args()
    config = resolve_pipeline(args.pipeline).preprocess
    files = list_images(args.folder)
    frames = [read_frame(path) for path in files]
    cases = [("as photographed", None, None)]
    cases += [(name, seed, None) for name in nuisance.NUISANCES for seed in args.seeds]
    cases += [(f"corners at {corner} of the centre", seed, corner) for corner in CORNERS for seed in args.seeds]
    rows = []
    for name, seed, corner in cases:
        refused, first_look = [], []
        rng = np.random.default_rng(seed)
        for path, frame in zip(files, frames):
            if corner is not None:
                frame = vignetted(frame, corner, rng)
            elif seed is not None:
                frame = nuisance.apply(name, frame, seed, path.name)
            full, first = refusals(frame, config)
            if full:
                refused.append({"file": path.name, "reason": full})
            if first:
                first_look.append(path.name)
        rows.append({"case": name, "seed": seed, "frames": len(files), "refused": len(refused),
                     "refused_by_the_first_look_alone": len(first_look), "refusals": refused})
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "refusals"}), flush=True)
    print(json.dumps({"pipeline": args.pipeline, "folder": str(args.folder), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
