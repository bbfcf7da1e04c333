"""A bundle for a setting that changes only what is built on the autoencoder (the maps, the
patch memory, the scoring), made on the autoencoder of an earlier bundle instead of training
one again: the same good images, the memory, per-pixel statistics and threshold calibrated
afresh with the new pipeline's settings, as `inspector train` would. Two bundles compared so
differ by the setting alone, free of training noise (as `general_validation.py
--autoencoder-from` does on the validation). Given the earlier bundle's own pipeline, it
re-builds that bundle's calibration and threshold to the bit. The earlier bundle's seed is kept
(its held-out split); a pipeline that trains or prepares differently is refused.

Usage (from the repository root):
    PYTHONPATH=. python benchmarks/on_same_autoencoder.py GOOD_DIR EARLIER_BUNDLE PIPELINE OUT
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from general_validation import TRAINING_KEYS

from inspector.bundle import load_bundle
from inspector.formats import list_images
from inspector.models.denoising import fit as denoising_fit
from inspector.models.pipeline_files import resolve_pipeline
from inspector.usecases.training import load_images, train_bundle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("good", type=Path)
    parser.add_argument("earlier", type=Path, help="a bundle whose autoencoder is kept")
    parser.add_argument("pipeline", help="a shipped pipeline's name or a pipeline file")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    earlier = load_bundle(args.earlier)
    seed = int(earlier.training["seed"])  # the held-out split the autoencoder did not learn from
    if earlier.training.get("folder") not in (None, str(args.good.resolve())):
        raise SystemExit(f"{args.earlier} was trained on {earlier.training['folder']}, not {args.good}")
    pipeline = resolve_pipeline(args.pipeline)
    # What trains the autoencoder, the copies it learns from, and the held-out split it did not.
    keys = TRAINING_KEYS | {"nuisances", "nuisance_copies", "nuisance_share"}
    changed = sorted(key for key in keys
                     if getattr(pipeline.model.settings, key, None) != getattr(earlier.pipeline.model.settings, key, None))
    changed += [key for key in ("architecture", "holdout_fraction")
                if getattr(pipeline.model, key) != getattr(earlier.pipeline.model, key)]
    if changed:
        raise SystemExit(f"{args.pipeline} trains the autoencoder differently ({', '.join(changed)}): train it instead")
    loaded = load_images(list_images(args.good), pipeline, seed=seed)
    if loaded.pipeline.preprocess != earlier.pipeline.preprocess:
        raise SystemExit(f"{args.pipeline} prepares the images differently from {args.earlier}: train it instead")
    autoencoder = earlier.model.get_layer("autoencoder")
    denoising_fit.train_autoencoder = lambda *a, **k: (autoencoder, [0.0])
    record = {"folder": str(args.good.resolve()), "autoencoder_from": {"bundle": str(args.earlier.resolve()),
                                                                  "fingerprint": earlier.fingerprint}}
    _, summary = train_bundle(loaded, args.out, loaded.pipeline, seed=seed, record=record)
    print(json.dumps({k: summary[k] for k in ("model_dir", "threshold", "held_out")}))


if __name__ == "__main__":
    main()
