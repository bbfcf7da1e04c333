"""Choosing `general`'s settings on training images only: held-out good frames against copies of
them with generic drawn defects (`validation_defects.draw_generic`: a thin structure cut, a piece
shifted, a spot, a region moved, a thin structure shortened), each with its own mask.

A fixed fifth of the good folder is held out (the same split for every seed); the pipeline is
trained on the rest as `inspector train` would be. The autoencoder is trained once per seed
for every variant that changes only what is built and calibrated after it (the maps, the second
opinion, the scoring), so those are calibrated afresh on the same autoencoder and compared free
of training noise; a variant that changes the training itself (`TRAINING_KEYS`) trains its own. Each variant is scored on the held-out
frames as photographed (good) and with every kind of drawn defect (two draws of each kind per
frame, the same draws for every seed and variant): image AUROC overall and per kind, recall and
false rejects at the variant's own calibrated threshold, and pixel AUROC / AUPRO against the
drawn masks; with `--nuisances`, image AUROC and false rejects with the held-out frames and their
drawn defects under each line nuisance named (`inspector.nuisance`). No test image is read.

Usage (from the repository root):
    PYTHONPATH=. python benchmarks/general_validation.py [--data ../shared/data/mvtec_transistor]
        [--pipeline general] [--seeds 0 1] [--out DIR] [--nuisances light-radial zoom ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from validation_defects import GENERIC_KINDS, draw_generic  # noqa: E402

from inspector.bundle import load_bundle  # noqa: E402
from inspector.calibration import roc_auc  # noqa: E402
from inspector.cv_setup import cv2  # noqa: E402
from inspector.formats import list_images  # noqa: E402
from inspector.models.components.running import score_arrays  # noqa: E402
from inspector.models.denoising import fit as denoising_fit  # noqa: E402
from inspector.models.pipeline_files import resolve_pipeline  # noqa: E402
from inspector.nuisance import NUISANCES  # noqa: E402
from inspector.nuisance import apply as apply_nuisance  # noqa: E402
from inspector.pixel_metrics import pixel_quality  # noqa: E402
from inspector.preprocess import prepare_frame, read_frame  # noqa: E402
from inspector.registration import Registration  # noqa: E402
from inspector.scoring import image_scores, score_map  # noqa: E402
from inspector.usecases.training import load_images, train_bundle  # noqa: E402

HELD_SHARE = 0.2
DRAWS = 2  # drawn defects of each kind per held-out frame

# What each variant changes in [model] (built after the autoencoder) and [scoring].
VARIANTS = {
    "today": ({}, {}),
    "patch memory (patch 6)": ({"second_opinion": "patch_memory", "patch_size": 6}, {}),
    "patch memory (patch 4)": ({"second_opinion": "patch_memory", "patch_size": 4}, {}),
    "error_sigma 1.0": ({"error_sigma": 1.0}, {}),
    "patch memory (patch 4), error_sigma 1.0": ({"second_opinion": "patch_memory", "patch_size": 4,
                                                 "error_sigma": 1.0}, {}),
    "patch memory (patch 6, radius 3)": ({"second_opinion": "patch_memory", "patch_size": 6, "search_radius": 3}, {}),
    "patch memory (patch 6, radius 4)": ({"second_opinion": "patch_memory", "patch_size": 6, "search_radius": 4}, {}),
    "patch memory (patch 6, 20 neighbours)": ({"second_opinion": "patch_memory", "patch_size": 6,
                                               "neighbours": 20}, {}),
    "patch memory (patch 8)": ({"second_opinion": "patch_memory", "patch_size": 8}, {}),
    "patch memory (patch 12)": ({"second_opinion": "patch_memory", "patch_size": 12}, {}),
    "patch memory (patch 16)": ({"second_opinion": "patch_memory", "patch_size": 16}, {}),
    "patch memory (patch 20)": ({"second_opinion": "patch_memory", "patch_size": 20}, {}),
    "patch memory (patch 24)": ({"second_opinion": "patch_memory", "patch_size": 24}, {}),
    "patch memory (patch 32)": ({"second_opinion": "patch_memory", "patch_size": 32}, {}),
    "patch memory (patch 16, 3 neighbours)": ({"second_opinion": "patch_memory", "patch_size": 16,
                                               "neighbours": 3}, {}),
    "patch memory (patch 16, 30 neighbours)": ({"second_opinion": "patch_memory", "patch_size": 16,
                                                "neighbours": 30}, {}),
    "patch memory (patch 16, radius 1)": ({"second_opinion": "patch_memory", "patch_size": 16,
                                           "search_radius": 1}, {}),
    "patch memory (patch 16), error_sigma 1.0": ({"second_opinion": "patch_memory", "patch_size": 16,
                                                  "error_sigma": 1.0}, {}),
    "patch memory (patch 16), error_sigma 3.0": ({"second_opinion": "patch_memory", "patch_size": 16,
                                                  "error_sigma": 3.0}, {}),
    "memory weight 2": ({"memory_weight": 2.0}, {}),
    "memory weight 4": ({"memory_weight": 4.0}, {}),
    "robust spread": ({"robust_spread": True}, {}),
    "robust spread, memory weight 2": ({"robust_spread": True, "memory_weight": 2.0}, {}),
    "no appearance": ({"appearance_error": False}, {}),
    "no appearance, memory weight 2": ({"appearance_error": False, "memory_weight": 2.0}, {}),
    "no appearance, memory weight 4": ({"appearance_error": False, "memory_weight": 4.0}, {}),
    # A variant that sets a training key to another value than the pipeline's trains an autoencoder
    # of its own (TRAINING_KEYS): with general.toml (removal_share = 0.3) "no removals" does.
    "structure removed 0.3": ({"removal_share": 0.3}, {}),
    "no removals": ({"removal_share": 0.0}, {}),
    "removals to the end 0.5": ({"removal_to_end": 0.5}, {}),
    "long removals to the end 0.5": ({"removal_to_end": 0.5, "removal_to_end_long": True}, {}),
    # Trained after the autoencoder, on the same one: not a training key.
    "discriminator 1000": ({"discriminator_steps": 1000}, {}),
    "discriminator 3000": ({"discriminator_steps": 3000}, {}),
    "discriminator 1000, weight 3": ({"discriminator_steps": 1000, "discriminator_weight": 3.0}, {}),
    "compiled training": ({"compile_training": True}, {}),
    "two autoencoders": ({"members": 2, "compile_training": True}, {}),
}
# Settings that change how the autoencoder is trained: a variant setting one gets its own. (Not
# nuisance_copies or nuisances: the copies are made once per seed, before the variants, as the
# pipeline says; a variant changing them would not change its copies. Give --pipeline instead.)
TRAINING_KEYS = {"removal_share", "removal_to_end", "removal_to_end_long", "defect_share", "defect_min_strength",
                 "nuisance_share", "min_steps", "epochs",
                 "batch_size", "learning_rate", "learning_rate_decay", "filters", "layout", "head_filters",
                 "ssim_weight", "worst_error_weight", "worst_error_share", "members", "compile_training"}
# Score reductions tried on every variant's maps (AUROC only: the threshold is the variant's own).
SMOOTHING = (0.75, 1.5, 3.0)


def variant_pipeline(pipeline, model_changes: dict, scoring_changes: dict):
    settings = dataclasses.replace(pipeline.model.settings, **model_changes)
    changed = pipeline.replace("model", settings=settings)
    return changed.replace("scoring", **scoring_changes) if scoring_changes else changed


def split(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    order = np.random.default_rng(1234).permutation(len(paths))
    held = int(round(HELD_SHARE * len(paths)))
    return [paths[i] for i in sorted(order[held:])], [paths[i] for i in sorted(order[:held])]


def drawn_defects(held: list[Path]):
    """For each held-out frame: its path, the frame, and its drawn defects as (kind, draw, the
    frame with the defect, its mask), the same draws for every seed, variant and nuisance."""
    for index, path in enumerate(held):
        frame = read_frame(path)
        yield path, frame, [(kind, draw, *draw_generic(np.random.default_rng([7, index, kind, draw]), frame, kind))
                            for kind in range(len(GENERIC_KINDS)) for draw in range(DRAWS)]


def validation_set(held: list[Path], bundle):
    """Held-out frames prepared as the bundle prepares them (good), and drawn-defect copies with
    their masks in the model's input (warped with the clean frame's own registration)."""
    config = bundle.pipeline.preprocess
    registration = Registration.from_dict(bundle.training["registration"])
    good, defect, masks, kinds = [], [], [], []
    for path, frame, drawings in drawn_defects(held):
        clean = prepare_frame(frame, config, path, registration=registration)
        good.append(clean.array)
        for kind, _, drawn, mask in drawings:
            defect.append(prepare_frame(drawn, config, path, registration=registration).array)
            warped = cv2.warpAffine(mask.astype(np.float32), clean.matrix, (config.crop_width, config.crop_height),
                                    flags=cv2.INTER_LINEAR)
            masks.append(warped > 0.25)
            kinds.append(kind)
    return np.stack(good), np.stack(defect), np.stack(masks), np.array(kinds)


def nuisance_sets(held: list[Path], bundle, names: list[str]) -> dict:
    """For each line nuisance in `names`: the held-out frames and their drawn-defect copies (the
    same draws as `validation_set`) under it, prepared as the bundle prepares them (no masks: the
    nuisances that move the frame would move them too)."""
    config = bundle.pipeline.preprocess
    registration = Registration.from_dict(bundle.training["registration"])
    sets = {name: ([], [], []) for name in names}
    for path, frame, drawings in drawn_defects(held):
        for name, (good, defect, kinds) in sets.items():
            good.append(prepare_frame(apply_nuisance(name, frame, 0, path.name), config, path,
                                      registration=registration).array)
            for kind, draw, drawn, _ in drawings:
                changed = apply_nuisance(name, drawn, 0, f"{path.name}-{kind}-{draw}")
                defect.append(prepare_frame(changed, config, path, registration=registration).array)
                kinds.append(kind)
    return {name: (np.stack(good), np.stack(defect), np.array(kinds)) for name, (good, defect, kinds) in sets.items()}


def measure_nuisances(bundle, sets: dict) -> dict:
    """Image AUROC and false rejects at the bundle's threshold under each nuisance."""
    rows = {}
    for name, (good, defect, kinds) in sets.items():
        g, _ = score_arrays(bundle.model, good, bundle.pipeline.scoring)
        d, _ = score_arrays(bundle.model, defect, bundle.pipeline.scoring)
        rows[name] = {"auroc": roc_auc(g, d), "false_rejects": int((g > bundle.threshold).sum()),
                      "recall": float((d > bundle.threshold).mean()),
                      "by_kind": {k: roc_auc(g, d[kinds == i]) for i, k in enumerate(GENERIC_KINDS)}}
    return rows


def measure(bundle, good, defect, masks, kinds) -> dict:
    scoring = bundle.pipeline.scoring
    started = time.perf_counter()
    g, good_maps = score_arrays(bundle.model, good, scoring)
    d, defect_maps = score_arrays(bundle.model, defect, scoring)
    ms = 1000 * (time.perf_counter() - started) / (len(good) + len(defect))
    hot = [score_map(m, scoring) for m in (*good_maps, *defect_maps)]
    pixels = pixel_quality(hot, [np.zeros(m.shape, bool) for m in good_maps] + list(masks))
    row = {"auroc": roc_auc(g, d), "recall": float((d > bundle.threshold).mean()),
           "false_rejects": int((g > bundle.threshold).sum()), "good": len(g),
           "pixel_auroc": pixels.pixel_auroc, "aupro": pixels.aupro, "model_ms_per_image": ms,
           "by_kind": {k: roc_auc(g, d[kinds == i]) for i, k in enumerate(GENERIC_KINDS)},
           "recall_by_kind": {k: float((d[kinds == i] > bundle.threshold).mean()) for i, k in enumerate(GENERIC_KINDS)}}
    for sigma in SMOOTHING:
        config = dataclasses.replace(scoring, smooth_sigma=sigma)
        gs, ds = image_scores(good_maps, config), image_scores(defect_maps, config)
        row[f"auroc smooth_sigma {sigma}"] = roc_auc(gs, ds)
        row[f"cut auroc smooth_sigma {sigma}"] = roc_auc(gs, ds[kinds == 0])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/mvtec_transistor")
    parser.add_argument("--pipeline", default="general")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--variants", nargs="*", default=None, help="names from VARIANTS (default: all)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--nuisances", nargs="*", default=[], choices=list(NUISANCES),
                        help="line nuisances (inspector.nuisance) to score the held-out frames under as well")
    parser.add_argument("--epochs", type=int, default=None, help="fewer epochs, for a quick try of the script")
    parser.add_argument("--autoencoder-from", default=None,
                        help="an earlier run's --out: each seed's autoencoder is taken from its first variant's "
                             "bundle there instead of being trained again (not for variants that change the "
                             "training, which train their own)")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="inspector-general-validation-"))
    out.mkdir(parents=True, exist_ok=True)
    pipeline = resolve_pipeline(args.pipeline)
    fit_paths, held = split(list_images(Path(args.data) / "train" / "good"))
    names = args.variants or list(VARIANTS)
    results = {"pipeline": pipeline.name, "fit_images": len(fit_paths), "held_out": len(held),
               "kinds": list(GENERIC_KINDS), "draws": DRAWS, "seeds": {}}
    train_autoencoder = denoising_fit.train_autoencoder
    for seed in args.seeds:
        loaded = load_images(fit_paths, pipeline, seed=seed)
        started = time.perf_counter()
        trained = {}
        training = ()  # the variant in hand's TRAINING_KEYS changes: one autoencoder per set of them

        def once(*a, **k):
            """Train the autoencoder the first time for these training settings; give the same
            one back to every other variant with them."""
            if training not in trained and args.autoencoder_from and not training:
                # The earlier run's "today" bundle if it has one, else its first: one trained as the pipeline says.
                found = sorted(Path(args.autoencoder_from, f"seed{seed}").glob("*/model.keras"),
                               key=lambda path: (path.parent.name != "today", path.parent.name))
                earlier = found[0].parent
                trained[training] = (load_bundle(earlier).model.get_layer("autoencoder"), [0.0])
            if training not in trained:
                trained[training] = train_autoencoder(*a, **k)
            return trained[training]

        denoising_fit.train_autoencoder = once
        rows, sets, under = {}, None, None
        try:
            for name in names:
                model_changes, scoring_changes = VARIANTS[name]
                # A change equal to the pipeline's own setting trains nothing new.
                training = tuple(sorted((key, value) for key, value in model_changes.items()
                                        if key in TRAINING_KEYS
                                        and getattr(loaded.pipeline.model.settings, key, None) != value))
                directory = out / f"seed{seed}" / name.replace(" ", "_").replace(",", "").replace("(", "").replace(")", "")
                # The loaded images carry the pipeline with its input size set from them: the variant changes that one.
                changed = variant_pipeline(loaded.pipeline, model_changes, scoring_changes)
                train_bundle(dataclasses.replace(loaded, pipeline=changed), directory, changed, seed=seed,
                             epochs=args.epochs)
                results["seeds"].setdefault(seed, {}).setdefault(
                    "train_minutes", round((time.perf_counter() - started) / 60, 1))
                bundle = load_bundle(directory)
                if sets is None:
                    sets = validation_set(held, bundle)
                rows[name] = measure(bundle, *sets)
                if args.nuisances:
                    under = under or nuisance_sets(held, bundle, args.nuisances)
                    rows[name]["nuisances"] = measure_nuisances(bundle, under)
                    for nuisance_name, r in rows[name]["nuisances"].items():
                        print(f"    under {nuisance_name}: AUROC {r['auroc']:.3f}, recall {r['recall']:.2f}, "
                              f"false rejects {r['false_rejects']} of {len(held)}", flush=True)
                print(f"seed {seed} {name}: " + json.dumps({k: v for k, v in rows[name].items()
                                                            if not isinstance(v, dict)}), flush=True)
                print(f"    by kind {json.dumps(rows[name]['by_kind'])}", flush=True)
        finally:
            denoising_fit.train_autoencoder = train_autoencoder
        results["seeds"][seed]["rows"] = rows
        (out / "results.json").write_text(json.dumps(results, indent=2))

    print(f"\n{pipeline.name}: {len(fit_paths)} frames trained on, {len(held)} held out; "
          f"{DRAWS} drawn defects of each kind per held-out frame")
    print("| variant | seed | AUROC | " + " | ".join(GENERIC_KINDS) + " | recall / false rejects | pixel AUROC / AUPRO | "
          + " | ".join(f"AUROC sigma {s}" for s in SMOOTHING) + " |")
    for name in names:
        for seed in args.seeds:
            r = results["seeds"][seed]["rows"][name]
            print(f"| {name} | {seed} | {r['auroc']:.3f} | " + " | ".join(f"{r['by_kind'][k]:.3f}" for k in GENERIC_KINDS)
                  + f" | {r['recall']:.2f} / {r['false_rejects']} of {r['good']} | {r['pixel_auroc']:.3f} / {r['aupro']:.3f} | "
                  + " | ".join(f"{r[f'auroc smooth_sigma {s}']:.3f}" for s in SMOOTHING) + " |")
    print(f"\nresults in {out / 'results.json'}")


if __name__ == "__main__":
    main()
