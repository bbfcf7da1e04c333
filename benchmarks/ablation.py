"""What each part of a model adds: the autoencoder alone, the patch memory alone, both.

Trains the pipeline (by default `screw-ae-memory`: the default autoencoder with the patch memory
as a second opinion) on 256 of the 320 `train/good` screws (a fixed split), then scores with
each branch of the trained model (the autoencoder's two maps added, each of them alone, the
patch memory), with the whole model, and with the autoencoder's squared error before it is
divided by the per-pixel statistics of good screws:
- validation: the 64 held-out training screws, as photographed and under one random line
  nuisance each, against copies of them with drawn defects (`validation_defects`: six kinds);
- test: `test_matched/` and raw `test/` (reported, never used to choose anything).
On the validation sets also where the heat is: pixel AUROC and AUPRO of each branch's score map
against the drawn defects' own masks (the pixels the drawing changed), in the crop's pixels.

Usage (from the repository root, inspector installed):
    python benchmarks/ablation.py [--data ../shared/data/mvtec_screw] [--pipeline screw-ae-memory] [--seed 0]
                                  [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from validation_defects import KINDS, draw  # noqa: E402

from inspector import models, nuisance  # noqa: E402
from inspector.bundle import load_bundle  # noqa: E402
from inspector.calibration import bootstrap_auc_interval, roc_auc  # noqa: E402
from inspector.formats import list_images  # noqa: E402
from inspector.inference import Inferencer  # noqa: E402
from inspector.models.components.regions import part_region  # noqa: E402
from inspector.models.components.running import score_arrays  # noqa: E402
from inspector.models.pipeline_files import resolve_pipeline  # noqa: E402
from inspector.preprocess import read_frame  # noqa: E402
from inspector.pixel_metrics import pixel_quality  # noqa: E402
from inspector.scoring import image_scores, score_map  # noqa: E402
from inspector.tf_setup import keras  # noqa: E402
from inspector.usecases.training import load_folder, train_bundle  # noqa: E402

# Layer names of the default model's branches (models/denoising/fit.py `assemble`): the
# autoencoder's maps added ("reconstruction_maps", with `structure_error`), or its squared error
# alone, and the patch memory's.
BRANCHES = {"autoencoder alone": ("reconstruction_maps", "reconstruction_error"),
            "autoencoder, squared error only": ("reconstruction_error",),
            "autoencoder, 1 - SSIM only": ("structure_error",),
            "patch memory alone": ("memory_unit",)}


class RawAutoencoderError:
    """The autoencoder's smoothed squared error kept to the part, without the per-pixel statistics."""

    def __init__(self, model):
        self.autoencoder = model.get_layer("autoencoder")
        self.error = model.get_layer("reconstruction_error")

    def scores(self, arrays, scoring):
        import tensorflow as tf

        maps = []
        for start in range(0, len(arrays), 64):
            x = tf.constant(arrays[start:start + 64, ..., None], tf.float32)
            error = self.error.raw(x, self.autoencoder(x, training=False))
            raw = error * part_region(x, self.error.part_level)
            maps.append(raw.numpy()[..., 0])
        maps = np.concatenate(maps)
        return image_scores(maps, scoring), maps


def branch_scores(model, arrays, scoring):
    """Image scores and error maps of one branch."""
    if isinstance(model, RawAutoencoderError):
        return model.scores(arrays, scoring)
    return score_arrays(model, arrays, scoring)


def drawn_masks(clean: np.ndarray, defect: np.ndarray) -> np.ndarray:
    """Where a drawn defect changed the crop: its own ground truth."""
    return np.abs(defect - clean) > DRAWN_LEVEL


DRAWN_LEVEL = 0.02  # a change of 2% of the grey range; the faint stains start at 15%


def branch_models(model) -> dict:
    """The whole model and, where it has them, each branch as a model of its own."""
    found = {"combined": model}
    names = {layer.name for layer in model.layers}
    taken = set()
    for label, layers in BRANCHES.items():
        layer = next((name for name in layers if name in names and name not in taken), None)
        if layer is not None:
            taken.add(layer)
            found[label] = keras.Model(model.input, model.get_layer(layer).output)
    if len(found) == 1:
        found = {"model": model}
    if "autoencoder" in names:
        found["autoencoder, error not normalised"] = RawAutoencoderError(model)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/mvtec_screw")
    parser.add_argument("--pipeline", default="screw-ae-memory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="Folder for the model and results.json")
    args = parser.parse_args()
    data = Path(args.data)
    out = Path(args.out or tempfile.mkdtemp(prefix="inspector-ablation-"))
    out.mkdir(parents=True, exist_ok=True)
    pipeline = resolve_pipeline(args.pipeline)

    paths = list_images(data / "train" / "good")
    order = np.random.default_rng(1234).permutation(len(paths))  # the same split for every seed
    fit_dir = out / "fit-images"
    fit_dir.mkdir(exist_ok=True)
    for i in order[64:]:
        link = fit_dir / paths[i].name
        if not link.exists():
            link.symlink_to(paths[i].resolve())
    held = [paths[i] for i in sorted(order[:64])]

    epochs = models.get(pipeline.model.architecture).planned_epochs(  # None: fitted without epochs
        pipeline.model.settings, None, len(order) - 64, pipeline.model.holdout_fraction) or 0

    def on_epoch(e: int, loss: float) -> None:  # a discriminator's passes follow the epochs
        name = f"epoch {e + 1}" if e < epochs else f"discriminator pass {e - epochs + 1}"
        print(f"{name} loss {loss:.5f}", file=sys.stderr)

    started = time.perf_counter()
    _, summary = train_bundle(load_folder(fit_dir, pipeline, seed=args.seed), out / "model", pipeline, seed=args.seed,
                              on_epoch=on_epoch)
    train_minutes = (time.perf_counter() - started) / 60
    bundle = load_bundle(out / "model")
    with Inferencer(bundle) as inferencer:
        rng = np.random.default_rng([args.seed, 99])
        clean = np.stack([inferencer.pre_process(p) for p in held])
        under_nuisance = []
        for p in held:
            frame = read_frame(p)
            for _ in range(10):  # a nuisance that pushes the part out of view is drawn again
                try:
                    under_nuisance.append(inferencer.pre_process(nuisance.augment(frame, rng)))
                    break
                except Exception:
                    continue
        under_nuisance = np.stack(under_nuisance)
        kinds = np.arange(len(clean)) % len(KINDS)
        sets = {
            "validation": (clean, np.stack([draw(rng, x, k) for x, k in zip(clean, kinds)])),
            "validation, nuisances": (under_nuisance, np.stack([draw(rng, x, k) for x, k in
                                                               zip(under_nuisance, kinds[:len(under_nuisance)])])),
        }
        for name, folder in (("test_matched", "test_matched"), ("raw test", "test")):
            sets[name] = tuple(np.stack([inferencer.pre_process(p) for p in list_images(data / folder / label)])
                               for label in ("good", "defect"))

    results = {"pipeline": pipeline.name, "seed": args.seed, "train_minutes": round(train_minutes, 1),
               "threshold": summary["threshold"], "rows": {}}
    for label, model in branch_models(bundle.model).items():
        row = {}
        for name, (good, defect) in sets.items():
            g, good_maps = branch_scores(model, good, pipeline.scoring)
            d, defect_maps = branch_scores(model, defect, pipeline.scoring)
            row[name] = {"auroc": roc_auc(g, d), "ci95": bootstrap_auc_interval(g, d),
                         "good_scores": g.tolist(), "defect_scores": d.tolist()}
            if name.startswith("validation"):  # the drawn defects know their own masks
                masks = drawn_masks(good, defect)
                hot = [score_map(m, pipeline.scoring) for m in (*good_maps, *defect_maps)]
                pixels = pixel_quality(hot, [np.zeros(m.shape, bool) for m in good_maps] + list(masks))
                row[name].update(pixel_auroc=pixels.pixel_auroc, aupro=pixels.aupro)
            if label in ("combined", "model"):  # the bundle's own threshold judges the whole model's scores
                row[name].update(recall=float((d > bundle.threshold).mean()),
                                 false_rejects=int((g > bundle.threshold).sum()), good=len(g))
            if name == "validation":
                row["validation by kind"] = {k: roc_auc(g, d[kinds == i]) for i, k in enumerate(KINDS)}
        results["rows"][label] = row
    (out / "results.json").write_text(json.dumps(results, indent=2))

    columns = list(sets)
    print(f"pipeline {pipeline.name}, seed {args.seed}, trained {train_minutes:.1f} min on 256 screws")
    print("| scored by | " + " | ".join(f"AUROC {c} (95% CI)" for c in columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for label, row in results["rows"].items():
        cells = [f"{row[c]['auroc']:.3f} ({row[c]['ci95'][0]:.2f}-{row[c]['ci95'][1]:.2f})" for c in columns]
        print(f"| {label} | " + " | ".join(cells) + " |")
    for label, row in results["rows"].items():
        if "recall" in row["validation"]:
            print(f"\nat the bundle's threshold {bundle.threshold:.4g} ({label}): " + "; ".join(
                f"{c} recall {row[c]['recall']:.2f}, {row[c]['false_rejects']} of {row[c]['good']} good rejected"
                for c in columns))
    print("\nwhere the heat is on the drawn defects (crop pixels, their own masks): pixel AUROC / AUPRO")
    for label, row in results["rows"].items():
        print(f"  {label}: " + "; ".join(f"{c} {row[c]['pixel_auroc']:.3f} / {row[c]['aupro']:.3f}"
                                        for c in columns if "aupro" in row[c]))
    print("\nvalidation AUROC by defect kind:")
    for label, row in results["rows"].items():
        print(f"  {label}: " + ", ".join(f"{k} {v:.3f}" for k, v in row["validation by kind"].items()))
    print(f"\nresults in {out / 'results.json'}")


if __name__ == "__main__":
    main()
