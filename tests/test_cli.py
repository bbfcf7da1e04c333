import csv
import json
import shutil

import pytest
from click.testing import CliRunner

from inspector.cli import cli
from conftest import SAMPLE

GOOD = SAMPLE / "test" / "good"
DEFECT = SAMPLE / "test" / "defect"


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result


def test_every_command_has_help_with_examples():
    for name, command in cli.commands.items():
        result = run(name, "--help")
        assert result.exit_code == 0, name
        assert "Usage:" in result.output and name in result.output
        if name not in ("review",):  # groups list their subcommands instead
            assert "Example" in result.output, f"{name} --help has no examples"


def test_train_summary_and_same_seed_same_threshold(tmp_path, tiny_pipeline_file, tiny_bundle):
    result = run("train", SAMPLE / "train" / "good", "--out", tmp_path / "m", "--pipeline",
                 tiny_pipeline_file, "--seed", "1", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["trained_on"] + summary["held_out"] == 40
    assert summary["epochs"] == 2
    first = json.loads((tiny_bundle / "bundle.json").read_text())["threshold"]["value"]
    assert summary["threshold"] == pytest.approx(first, rel=0, abs=0)


def test_train_refuses_to_overwrite_without_force(tiny_bundle, tiny_pipeline_file):
    result = run("train", SAMPLE / "train" / "good", "--out", tiny_bundle, "--pipeline", tiny_pipeline_file)
    assert result.exit_code == 1
    assert "already holds a model bundle; use --force" in result.output


def test_train_with_a_bad_pipeline_names_the_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\nlayers = 3\n")
    result = run("train", SAMPLE / "train" / "good", "--out", tmp_path / "m", "--pipeline", bad)
    assert result.exit_code == 1
    assert "unknown key 'model.layers'" in result.output


def test_train_on_an_empty_folder_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run("train", tmp_path / "empty", "--out", tmp_path / "m")
    assert result.exit_code == 1
    assert "no images found in good folder" in result.output


def test_score_files_and_folders_with_heatmaps(tiny_bundle, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    heat = tmp_path / "heat"
    result = run("score", tiny_bundle, DEFECT, broken, "--heatmaps", heat, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 13
    by_name = {r["path"].rsplit("/", 1)[1]: r for r in rows}
    assert by_name["broken.png"]["verdict"] == "error"
    assert "not a readable image" in by_name["broken.png"]["error"]
    threshold = json.loads((tiny_bundle / "bundle.json").read_text())["threshold"]["value"]
    for name, row in by_name.items():
        if name == "broken.png":
            continue
        assert row["verdict"] == ("defect" if row["score"] > threshold else "ok")
        assert (heat / name.replace(".png", "_heatmap.png")).stat().st_size > 0
        assert (heat / name.replace(".png", "_overlay.png")).stat().st_size > 0


def test_score_text_output(tiny_bundle):
    result = run("score", tiny_bundle, GOOD / "000.png")
    assert result.exit_code == 0, result.output
    assert result.stdout.split()[0] in ("ok", "defect")
    assert "threshold" in result.stdout and "000.png" in result.stdout


def test_score_with_a_broken_bundle_fails_clearly(tiny_bundle, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(tiny_bundle, copy)
    (copy / "bundle.json").unlink()
    result = run("score", copy, GOOD)
    assert result.exit_code == 1
    assert "incomplete bundle" in result.output


def test_evaluate_prints_metrics_and_writes_report(tiny_bundle, tmp_path):
    report = tmp_path / "report"
    result = run("evaluate", tiny_bundle, "--good", GOOD, "--defect", DEFECT, "--report", report)
    assert result.exit_code == 0, result.output
    assert "AUROC" in result.stdout and "95% bootstrap interval" in result.stdout
    assert "Average precision" in result.stdout
    for name in ("roc.png", "histogram.png", "scores.csv", "metrics.json"):
        assert (report / name).stat().st_size > 0
    rows = list(csv.DictReader(open(report / "scores.csv")))
    assert len(rows) == 20 and {r["label"] for r in rows} == {"good", "defect"}
    metrics = json.loads((report / "metrics.json").read_text())
    assert 0 <= metrics["auroc"] <= 1 and metrics["good"] == 8 and metrics["defect"] == 12
    c = metrics["confusion"]
    assert c["true_positive"] + c["false_negative"] == 12 and c["false_positive"] + c["true_negative"] == 8


def test_evaluate_with_exposure_jitter_is_reproducible(tiny_bundle):
    plain = json.loads(run("evaluate", tiny_bundle, "--good", GOOD, "--defect", DEFECT, "--json").stdout)
    jit1 = json.loads(run("evaluate", tiny_bundle, "--good", GOOD, "--defect", DEFECT, "--json",
                          "--exposure-jitter").stdout)
    jit2 = json.loads(run("evaluate", tiny_bundle, "--good", GOOD, "--defect", DEFECT, "--json",
                          "--exposure-jitter").stdout)
    assert jit1["exposure_jitter"] and not plain["exposure_jitter"]
    assert jit1 == jit2


def test_calibrate_policies_update_the_bundle(tiny_bundle, tmp_path):
    model = tmp_path / "m"
    shutil.copytree(tiny_bundle, model)
    result = run("calibrate", model, "--good", GOOD, "--policy", "mean_multiple", "--factor", "2", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    meta = json.loads((model / "bundle.json").read_text())
    scores = meta["calibration"]["good_scores"]
    assert len(scores) == 8
    assert data["threshold"] == pytest.approx(2 * sum(scores) / len(scores))
    assert meta["threshold"]["value"] == data["threshold"]
    assert meta["threshold"]["policy"] == "mean_multiple" and meta["threshold"]["factor"] == 2.0
    assert (model / "calibration.png").stat().st_size > 0


def test_calibrate_best_f1_with_defects_prints_confusion(tiny_bundle, tmp_path):
    model = tmp_path / "m"
    shutil.copytree(tiny_bundle, model)
    result = run("calibrate", model, "--good", GOOD, "--defect", DEFECT, "--policy", "best_f1")
    assert result.exit_code == 0, result.output
    assert "judged defect" in result.stdout and "Precision" in result.stdout and "recall" in result.stdout


def test_calibrate_supervised_policy_without_defects_fails(tiny_bundle, tmp_path):
    result = run("calibrate", tiny_bundle, "--good", GOOD, "--policy", "target_recall", "--dry-run")
    assert result.exit_code == 1
    assert "needs defect images" in result.output


def test_train_help_lists_every_shipped_pipeline():
    from inspector.config import pipeline_names

    help_text = " ".join(run("train", "--help").output.split())
    assert len(pipeline_names()) >= 3
    for name in pipeline_names():
        assert name in help_text
