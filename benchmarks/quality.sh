#!/usr/bin/env bash
# Train the default and the seed003 pipelines on the full MVTec screw train set, in one session,
# and evaluate both on test_matched/, raw test/ and exposure-jittered test_matched/.
# Usage: bash benchmarks/quality.sh [OUT_DIR] [SEED]
set -euo pipefail
data=${INSPECTOR_DATA:-../shared/data/mvtec_screw}
out=${1:-benchmarks/results}
seed=${2:-0}
mkdir -p "$out"
for pipeline in ${PIPELINES:-screw seed003}; do
  model="$out/model-$pipeline-$seed"
  inspector train "$data/train/good" --out "$model" --pipeline "$pipeline" --seed "$seed" --force --json \
    > "$out/train-$pipeline-$seed.json"
  inspector evaluate "$model" --good "$data/test_matched/good" --defect "$data/test_matched/defect" \
    --report "$out/eval-$pipeline-$seed-matched" --json > "$out/eval-$pipeline-$seed-matched.json"
  inspector evaluate "$model" --good "$data/test/good" --defect "$data/test/defect" \
    --report "$out/eval-$pipeline-$seed-raw" --json > "$out/eval-$pipeline-$seed-raw.json"
  inspector evaluate "$model" --good "$data/test_matched/good" --defect "$data/test_matched/defect" \
    --exposure-jitter --json > "$out/eval-$pipeline-$seed-jitter.json"
done
python - "$out" "$seed" <<'PY'
import json, sys
out, seed = sys.argv[1], sys.argv[2]
print(f"| pipeline | seed | train min | AUROC test_matched (95% CI) | AUROC raw test (95% CI) | AUROC jitter | AP matched / raw | recall / false rejects @thr, matched | raw |")
print("|---|---|---|---|---|---|---|---|---|")
import os
for p in os.environ.get("PIPELINES", "screw seed003").split():
    t = json.load(open(f"{out}/train-{p}-{seed}.json"))
    m, r, j = (json.load(open(f"{out}/eval-{p}-{seed}-{k}.json")) for k in ("matched", "raw", "jitter"))
    c, rc = m["confusion"], r["confusion"]
    print(f"| {p} | {seed} | {t['total_seconds'] / 60:.1f} | {m['auroc']:.3f} ({m['auroc_ci95'][0]:.2f}-{m['auroc_ci95'][1]:.2f}) "
          f"| {r['auroc']:.3f} ({r['auroc_ci95'][0]:.2f}-{r['auroc_ci95'][1]:.2f}) | {j['auroc']:.3f} "
          f"| {m['average_precision']:.3f} / {r['average_precision']:.3f} "
          f"| {c['recall']:.2f} / {c['false_positive']} of {m['good']} | {rc['recall']:.2f} / {rc['false_positive']} of {r['good']} |")
PY
