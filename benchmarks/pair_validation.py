"""Two bundles trained by ablation.py (the same 256/64 split, two seeds) scored alone and as a pair
(their error maps averaged) on ablation.py's validation sets of --seed (the same drawn defects
and nuisances): image AUROC, pixel AUROC and AUPRO.

Usage (from the repository root, inspector installed):
    python benchmarks/pair_validation.py --models abl-screw-0/model abl-screw-1/model --seed 0
"""
import argparse
import sys
from pathlib import Path

import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parent))
from validation_defects import KINDS, draw
from ablation import drawn_masks
from inspector import nuisance
from inspector.bundle import load_bundle
from inspector.calibration import roc_auc
from inspector.formats import list_images
from inspector.inference import Inferencer
from inspector.models.components.running import score_arrays
from inspector.preprocess import read_frame
from inspector.pixel_metrics import pixel_quality
from inspector.scoring import image_scores, score_map

ap = argparse.ArgumentParser()
ap.add_argument("--models", nargs=2, required=True)
ap.add_argument("--seed", type=int, required=True)
ap.add_argument("--data", default="../shared/data/mvtec_screw")
args = ap.parse_args()
paths = list_images(Path(args.data) / "train" / "good")
order = np.random.default_rng(1234).permutation(len(paths))
held = [paths[i] for i in sorted(order[:64])]
bundles = [load_bundle(m) for m in args.models]
with Inferencer(bundles[0]) as inferencer:
    rng = np.random.default_rng([args.seed, 99])
    clean = np.stack([inferencer.pre_process(p) for p in held])
    under = []
    for p in held:
        frame = read_frame(p)
        for _ in range(10):
            try:
                under.append(inferencer.pre_process(nuisance.augment(frame, rng)))
                break
            except Exception:
                continue
    under = np.stack(under)
    kinds = np.arange(len(clean)) % len(KINDS)
    sets = {"validation": (clean, np.stack([draw(rng, x, k) for x, k in zip(clean, kinds)])),
            "validation, nuisances": (under, np.stack([draw(rng, x, k) for x, k in zip(under, kinds[:len(under)])]))}
scoring = bundles[0].pipeline.scoring
out = {}
for name, (good, defect) in sets.items():
    maps = [[score_arrays(b.model, arr, scoring)[1] for arr in (good, defect)] for b in bundles]
    masks = drawn_masks(good, defect)
    for label, (gm, dm) in {"A": maps[0], "B": maps[1],
                            "A+B": [(maps[0][i] + maps[1][i]) / 2 for i in range(2)]}.items():
        g, d = image_scores(gm, scoring), image_scores(dm, scoring)
        hot = [score_map(m, scoring) for m in (*gm, *dm)]
        px = pixel_quality(hot, [np.zeros(m.shape, bool) for m in gm] + list(masks))
        out.setdefault(label, {})[name] = (roc_auc(g, d), px.pixel_auroc, px.aupro)
for label, row in out.items():
    print(label, "; ".join(f"{n}: AUROC {a:.3f}, pixel {p:.3f} / {q:.3f}" for n, (a, p, q) in row.items()))
