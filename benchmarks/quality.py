"""Detection quality of pipelines trained from scratch on the MVTec screw train set, in one session.

For each pipeline and seed: `inspector train DATA/train/good --seed SEED` (timed as a command),
then the bundle judges, through the same `Inferencer` as `inspector evaluate`:
- `test_matched/` (the test images mapped to the train set's intensity mean and std),
- raw `test/` (its good screws are darker than the rest),
- `test_matched/` with exposure jitter (`--exposure-jitter`, seed 0),
- with `--nuisances`, `test_matched/` under each line nuisance (`--nuisance NAME`, seed 0).
On `test_matched/` and `test/` also pixel AUROC and AUPRO against `ground_truth/defect/` (as
`inspector evaluate --masks` computes them), per defect kind with `defect_kinds.csv`.
AUROC with a 95% bootstrap interval, average precision, and recall / false rejects at the
threshold `train` calibrated from good images alone. Images that cannot be judged (the part
pushed out of view, say) are counted, not scored.

Usage (repository root, inspector installed):
    python benchmarks/quality.py OUT_DIR [--pipelines screw screw-memory] [--seeds 0 1 2] [--nuisances]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from inspector.bundle import load_bundle
from inspector.formats import list_images
from inspector.usecases.evaluation import exposure_jitter, nuisance_change, quality
from inspector.usecases.pixel_evaluation import pixel_figures, read_kinds
from inspector.inference import Inferencer
from inspector.nuisance import NUISANCES


def judge(inferencer: Inferencer, folder: Path, change_for=None, keep_maps: bool = False):
    results = list(inferencer.judge(list_images(folder), change_for=change_for, keep_maps=keep_maps))
    judged = [r for r in results if r.score is not None]
    return judged, np.array([r.score for r in judged]), len(results) - len(judged)


def measure(inferencer, data: Path, folder: str, change_for=None, pixels: bool = False) -> dict:
    """Image figures; with `pixels`, pixel AUROC and AUPRO against ground_truth/defect/ too."""
    good_results, good, good_errors = judge(inferencer, data / folder / "good", change_for, pixels)
    defect_results, defect, defect_errors = judge(inferencer, data / folder / "defect", change_for, pixels)
    q = quality(good, defect, inferencer.bundle.threshold)
    row = {"auroc": q.auroc, "ci95": list(q.auroc_ci95), "ap": q.average_precision,
           "recall": q.confusion.recall, "false_rejects": q.confusion.false_positive, "good": len(good),
           "defect": len(defect), "unjudged": good_errors + defect_errors}
    if pixels and (data / "ground_truth" / "defect").is_dir():
        kinds = read_kinds(data / "defect_kinds.csv") if (data / "defect_kinds.csv").is_file() else None
        figures = pixel_figures(good_results, defect_results, data / "ground_truth" / "defect",
                                inferencer.pipeline.scoring, inferencer.bundle.threshold, kinds)
        row.update(pixel_auroc=figures["pixel_auroc"], aupro=figures["aupro"], kinds=figures.get("kinds"),
                   missed=sorted(r.path.name for r in defect_results if r.verdict != "defect"))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/mvtec_screw"))
    parser.add_argument("--pipelines", nargs="+", default=["screw", "screw-memory", "screw-vae", "seed003"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--nuisances", action="store_true", help="Also score test_matched under every nuisance.")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for pipeline in args.pipelines:
        for seed in args.seeds:
            model = args.out / f"model-{pipeline}-{seed}"
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "inspector.cli", "train", str(args.data / "train" / "good"),
                            "--out", str(model), "--pipeline", pipeline, "--seed", str(seed), "--force", "--json"],
                           check=True, stdout=open(args.out / f"train-{pipeline}-{seed}.json", "w"))
            row = {"pipeline": pipeline, "seed": seed, "train_minutes": (time.perf_counter() - started) / 60}
            with Inferencer(load_bundle(model)) as inferencer:
                row["matched"] = measure(inferencer, args.data, "test_matched", pixels=True)
                row["raw"] = measure(inferencer, args.data, "test", pixels=True)
                row["jitter"] = measure(inferencer, args.data, "test_matched", exposure_jitter(0))
                if args.nuisances:
                    row["nuisances"] = {name: measure(inferencer, args.data, "test_matched", nuisance_change(name, 0))
                                        for name in NUISANCES}
            rows.append(row)
            (args.out / "quality.json").write_text(json.dumps(rows, indent=2))
            print(f"done {pipeline} seed {seed}", file=sys.stderr, flush=True)
    print_tables(rows)


def print_tables(rows: list[dict]) -> None:
    print("| pipeline | seed | train min | AUROC test_matched (95% CI) | AUROC raw test (95% CI) | AUROC jittered "
          "| AP matched / raw | recall / false rejects, matched | raw | jittered |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        m, w, j = r["matched"], r["raw"], r["jitter"]
        print(f"| {r['pipeline']} | {r['seed']} | {r['train_minutes']:.1f} "
              f"| {m['auroc']:.3f} ({m['ci95'][0]:.2f}-{m['ci95'][1]:.2f}) "
              f"| {w['auroc']:.3f} ({w['ci95'][0]:.2f}-{w['ci95'][1]:.2f}) | {j['auroc']:.3f} "
              f"| {m['ap']:.3f} / {w['ap']:.3f} | "
              + " | ".join(f"{x['recall']:.2f} / {x['false_rejects']} of {x['good']}" for x in (m, w, j)) + " |")
    with_pixels = [r for r in rows if "aupro" in r["matched"]]
    if with_pixels:
        print("\nWhere the heat is (ground_truth/defect/ masks, each photo's own pixels): pixel AUROC / AUPRO "
              "(FPR <= 0.3)")
        print("| pipeline | seed | test_matched | raw test | missed at the threshold (raw test) |")
        print("|---|---|---|---|---|")
        for r in with_pixels:
            m, w = r["matched"], r["raw"]
            print(f"| {r['pipeline']} | {r['seed']} | {m['pixel_auroc']:.3f} / {m['aupro']:.3f} "
                  f"| {w['pixel_auroc']:.3f} / {w['aupro']:.3f} | {', '.join(w['missed']) or '-'} |")
    with_nuisances = [r for r in rows if "nuisances" in r]
    if with_nuisances:
        print("\nUnder line nuisances (test_matched, seed 0 of each nuisance): AUROC; recall / false rejects at the "
              "bundle's threshold; images that could not be judged")
        print("| nuisance | " + " | ".join(f"{r['pipeline']} (seed {r['seed']})" for r in with_nuisances) + " |")
        print("|---" * (len(with_nuisances) + 1) + "|")
        for name in NUISANCES:
            cells = []
            for r in with_nuisances:
                x = r["nuisances"][name]
                cells.append(f"{x['auroc']:.3f}; {x['recall']:.2f} / {x['false_rejects']} of {x['good']}"
                             + (f"; {x['unjudged']} unjudged" if x["unjudged"] else ""))
            print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
