#!/usr/bin/env bash
# The demo on sample_data: train on good screws, watch an inbox the sample test screws are
# dropped into (verdicts in SQLite), then list the flagged parts and write the review report.
# Usage: bash scripts/demo.sh [OUT_DIR]   (from the repository root, with inspector installed;
# INSPECTOR_DEMO_MODEL=DIR uses that bundle, trained on sample_data/train/good, instead of training one)
set -euo pipefail
out=${1:-demo}
rm -rf "$out"
mkdir -p "$out/inbox"
export INSPECTOR_DB="$out/inspector.db"

if [ -n "${INSPECTOR_DEMO_MODEL:-}" ]; then  # a bundle trained already on sample_data/train/good (the tests)
  echo "== 1. Using the model trained in $INSPECTOR_DEMO_MODEL"
  cp -r "$INSPECTOR_DEMO_MODEL" "$out/model"
else
  echo "== 1. Training the default screw pipeline on sample_data/train/good"
  inspector train sample_data/train/good --out "$out/model"
fi

echo
echo "== 2. Evaluating on the sample test screws (exposure-matched)"
inspector evaluate "$out/model" --good sample_data/test/good --defect sample_data/test/defect \
  --report "$out/evaluation"

echo
echo "== 3. Watching $out/inbox while the 20 sample test screws are dropped into it"
inspector watch "$out/inbox" --model "$out/model" --out "$out/line" --exit-when-idle 5 -v &
daemon=$!
sleep 1
for f in sample_data/test/good/*.png sample_data/test/defect/*.png; do
  kind=$(basename "$(dirname "$f")")
  cp "$f" "$out/inbox/.incoming.tmp" && mv "$out/inbox/.incoming.tmp" "$out/inbox/${kind}_$(basename "$f")"
done
wait "$daemon"

echo
echo "== 4. What QA sees: the flagged parts, and the review report"
inspector review list --flagged
inspector report --out "$out/report" --all   # every part; flagged ones have a red top edge
echo
echo "Done. Model: $out/model  verdicts: $INSPECTOR_DB  images: $out/line  report: $out/report/index.html"
echo
echo "To review the results in a browser (then open http://127.0.0.1:8765/):"
inspector=$(command -v inspector)
echo "  ${inspector#"$PWD"/} serve --db $INSPECTOR_DB --out $out/line"
