#!/usr/bin/env bash
# The demo on sample_data: train a model on good screws, then judge the sample test screws.
# Usage: bash scripts/demo.sh [OUT_DIR]   (run from the repository root, inside the venv)
set -euo pipefail
out=${1:-demo}
mkdir -p "$out"
echo "== Training the default screw pipeline on sample_data/train/good"
inspector train sample_data/train/good --out "$out/model" --force
echo
echo "== Evaluating on the sample test screws (exposure-matched)"
inspector evaluate "$out/model" --good sample_data/test/good --defect sample_data/test/defect --report "$out/evaluation"
echo
echo "== Judging the defect samples, with heatmaps"
inspector score "$out/model" sample_data/test/defect --heatmaps "$out/heatmaps"
echo
echo "Done: model in $out/model, evaluation report in $out/evaluation, heatmaps in $out/heatmaps"
