import csv
import json
import os
import re
import shutil

import click
import pytest
from click.testing import CliRunner

from inspector.bundle import accept_edits
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


def test_help_texts_say_what_each_command_takes():
    top = run("--help").output
    for step in ("inspector train", "inspector watch", "inspector review list", "inspector serve",
                 "inspector review label"):
        assert step in top, step
    serve = run("serve", "--help").output
    assert "Debug log lines too." in serve and "watch" not in serve.split("--verbose", 1)[1].split("--log-format")[0]
    assert "one per judged image" in run("watch", "--help").output
    update = run("update", "--help").output
    assert "[default: 5]" in update and "MIN_REVIEWS" not in update
    listing = run("review", "list", "--help").output
    assert re.search(r"--limit INTEGER RANGE\s+At most this many inspections, the newest", listing), listing


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
    assert result.exit_code == 2, result.output  # an input could not be judged
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
        assert (heat / name.replace(".png", "_overlay.jpg")).stat().st_size > 0
        assert (heat / name.replace(".png", "_crop.png")).stat().st_size > 0


def test_score_text_output(tiny_bundle):
    result = run("score", tiny_bundle, GOOD / "000.png")
    assert result.exit_code in (0, 1), result.output
    assert result.stdout.split()[0] in ("ok", "defect")
    assert "threshold" in result.stdout and "000.png" in result.stdout


def test_score_with_a_broken_bundle_fails_clearly(tiny_bundle, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(tiny_bundle, copy)
    (copy / "bundle.json").unlink()
    result = run("score", copy, GOOD)
    assert result.exit_code == 2  # nothing could be judged: not 1, which means a defect
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
    from inspector.models.pipeline_files import pipeline_names

    help_text = " ".join(run("train", "--help").output.split())
    assert len(pipeline_names()) >= 3
    for name in pipeline_names():
        assert name in help_text


def with_threshold(bundle, tmp_path, value):
    """A copy of a bundle with its threshold set to `value`."""
    copy = tmp_path / f"threshold_{value}"
    shutil.copytree(bundle, copy)
    meta = json.loads((copy / "bundle.json").read_text())
    meta["threshold"]["value"] = value
    (copy / "bundle.json").write_text(json.dumps(meta))
    accept_edits(copy)  # an edit on purpose (`inspector bundle verify --accept-edits`)
    return copy


def test_score_exit_status_says_ok_defect_or_not_judged(tiny_bundle, tmp_path):
    lenient, strict = with_threshold(tiny_bundle, tmp_path, 1e9), with_threshold(tiny_bundle, tmp_path, -1.0)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    (tmp_path / "empty").mkdir()
    assert run("score", lenient, GOOD, DEFECT).exit_code == 0
    assert run("score", strict, GOOD / "000.png", "--json").exit_code == 1
    assert run("score", lenient, GOOD, broken).exit_code == 2  # one could not be judged
    assert run("score", strict, GOOD, broken).exit_code == 2  # even with defects found: not everything was judged
    assert run("score", lenient, tmp_path / "empty").exit_code == 2  # nothing to judge
    assert run("score", tmp_path / "empty", GOOD).exit_code == 2  # no model
    assert run("score", lenient, GOOD, "--batch", "0").exit_code == 2  # a wrong option
    help_text = run("score", "--help").output
    assert "Exit status" in help_text and "0  every image was judged ok" in help_text


def test_score_heatmaps_of_images_with_the_same_name_do_not_overwrite_each_other(tiny_bundle, tmp_path):
    heat = tmp_path / "heat"
    result = run("score", tiny_bundle, GOOD / "000.png", DEFECT / "000.png", DEFECT / "005_1.png",
                 "--heatmaps", heat, "--json")
    assert result.exit_code in (0, 1), result.output
    rows = {r["path"]: r for r in json.loads(result.stdout)}
    good, defect = rows[str(GOOD / "000.png")], rows[str(DEFECT / "000.png")]
    assert good["heatmap"] == str(heat / "good_000_heatmap.png")
    assert defect["overlay"] == str(heat / "defect_000_overlay.jpg")
    assert rows[str(DEFECT / "005_1.png")]["heatmap"] == str(heat / "005_1_heatmap.png")  # no clash: plain name
    assert sorted(p.name for p in heat.iterdir()) == sorted(
        f"{stem}_{kind}" for stem in ("good_000", "defect_000", "005_1")
        for kind in ("heatmap.png", "overlay.jpg", "crop.png"))
    assert (heat / "good_000_heatmap.png").read_bytes() != (heat / "defect_000_heatmap.png").read_bytes()


def test_picture_names_add_only_the_folders_that_tell_images_apart():
    from pathlib import Path

    from inspector.pictures import picture_stems

    paths = [Path("/a/x/good/000.png"), Path("/a/y/good/000.png"), Path("/a/defect/000.png"), Path("/a/z/1.png")]
    assert picture_stems(paths + paths[:1]) == {
        paths[0]: "x_good_000", paths[1]: "y_good_000", paths[2]: "defect_000", paths[3]: "1"}


def snapshot(folder):
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()}


def test_calibrate_dry_run_writes_nothing_unless_a_plot_is_asked_for(tiny_bundle, tmp_path):
    model = tmp_path / "m"
    shutil.copytree(tiny_bundle, model)
    before = snapshot(model)
    result = run("calibrate", model, "--good", GOOD, "--policy", "mean_multiple", "--factor", "2", "--dry-run",
                 "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["saved"] is False and data["histogram"] is None
    assert snapshot(model) == before and sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    plot = tmp_path / "look.png"
    result = run("calibrate", model, "--good", GOOD, "--dry-run", "--plot", plot)
    assert result.exit_code == 0, result.output
    assert plot.stat().st_size > 0 and f"Histogram written to {plot}" in result.stdout
    assert snapshot(model) == before


@pytest.fixture
def no_scoring(monkeypatch):
    """Fail the test if a model is loaded: the command should have stopped before."""
    import inspector.bundle

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(inspector.bundle, "load_bundle", refuse)


@pytest.mark.parametrize("args, message", [
    (["--good", GOOD, "--policy", "best_f1"], "policy 'best_f1' needs defect images"),
    (["--good", GOOD, "--policy", "target_recall", "--target-recall", "0.9"], "needs defect images"),
    (["--good", GOOD, "--policy", "quantile", "--k", "3"],
     "'k' is a parameter of policy 'mean_std', not of 'quantile'"),
    (["--good", GOOD, "--defect", "EMPTY", "--policy", "best_f1"], "no images found in defect folder"),
    (["--good", "EMPTY"], "no images found in good folder"),
])
def test_calibrate_checks_its_arguments_before_scoring(tiny_bundle, tmp_path, no_scoring, args, message):
    (tmp_path / "EMPTY").mkdir()
    args = [tmp_path / "EMPTY" if a == "EMPTY" else a for a in args]
    result = run("calibrate", tiny_bundle, *args)
    assert result.exit_code == 1 and message in result.output, result.output


def test_evaluate_and_train_check_their_arguments_first(tiny_bundle, tmp_path, no_scoring):
    (tmp_path / "empty").mkdir()
    result = run("evaluate", tiny_bundle, "--good", GOOD, "--defect", tmp_path / "empty")
    assert result.exit_code == 1 and "no images found in defect folder" in result.output
    result = run("train", SAMPLE / "train" / "good", "--out", tmp_path / "m", "--epochs", "3", "--pipeline",
                 "screw-memory")
    assert result.exit_code == 1 and "--epochs: pipeline screw-memory (patch_memory) is fitted without epochs" \
        in result.output
    assert not (tmp_path / "m").exists()


def test_long_work_logs_a_line_each_tenth_when_stderr_is_not_a_terminal(tiny_bundle, tiny_pipeline_file, tmp_path):
    """A pipe or a log file gets no bars, and no minutes of silence either; --json stays quiet."""
    trained = run("train", SAMPLE / "train" / "good", "--out", tmp_path / "m", "--pipeline", tiny_pipeline_file,
                  "--epochs", "10")
    assert trained.exit_code == 0, trained.output
    epochs = re.findall(r" INFO Training compact: (\d+)% \((\d+)/10\), loss 0\.\d+, \d+ s so far", trained.stderr)
    assert epochs == [(str(10 * n), str(n)) for n in range(1, 11)], trained.stderr
    assert "about" in trained.stderr.splitlines()[-2] and "about" not in trained.stderr.splitlines()[-1]
    assert " INFO Loading images: 100% (40/40)" in trained.stderr
    assert "warning" not in trained.stderr  # 10 epochs are not too few for a pipeline of 2
    scored = run("score", tiny_bundle, GOOD)
    evaluated = run("evaluate", tiny_bundle, "--good", GOOD, "--defect", DEFECT)
    count = len(list(GOOD.iterdir()))
    assert f" INFO Scoring: 100% ({count}/{count})" in scored.stderr, scored.stderr
    assert f" INFO Scoring good: 100% ({count}/{count})" in evaluated.stderr and " INFO Scoring defect: 100%" \
        in evaluated.stderr, evaluated.stderr
    for result in (scored, evaluated):
        assert result.exit_code in (0, 1), result.output
        assert len(result.stderr.splitlines()) <= 20
    quiet = run("score", tiny_bundle, GOOD, "--json")
    assert quiet.exit_code in (0, 1) and quiet.stderr == "", quiet.stderr


def test_train_warns_when_the_epochs_asked_for_are_far_fewer_than_the_pipelines(tiny_pipeline_file, tmp_path):
    longer = tmp_path / "longer.toml"
    longer.write_text(tiny_pipeline_file.read_text().replace("epochs = 2", "epochs = 40"))
    short = run("train", SAMPLE / "train" / "good", "--out", tmp_path / "short", "--pipeline", longer,
                "--epochs", "2")
    assert short.exit_code == 0, short.output
    assert ("warning: training 2 epochs: far fewer than the 40 epochs pipeline tiny runs on 40 images; a model "
            "trained that short may pass defects the full training finds") in short.stderr
    enough = run("train", SAMPLE / "train" / "good", "--out", tmp_path / "enough", "--pipeline", longer,
                 "--epochs", "10", "--json")
    assert enough.exit_code == 0 and "warning" not in enough.stderr, enough.stderr


def test_train_on_a_terminal_shows_epochs_with_loss_and_time_left(tiny_pipeline_file, tmp_path):
    """Through a pseudo-terminal, as a person at the line PC sees it; --json keeps it quiet."""
    import os
    import pty
    import subprocess
    import sys

    def stderr_on_a_terminal(*args):
        leader, follower = pty.openpty()
        process = subprocess.Popen([sys.executable, "-m", "inspector.cli", "train", SAMPLE / "train" / "good",
                                    "--pipeline", tiny_pipeline_file, "--epochs", "3", *args],
                                   stdout=subprocess.DEVNULL, stderr=follower, cwd=tmp_path)
        os.close(follower)  # the child holds it; reading ends when the child is gone
        chunks = []
        try:
            while True:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(leader)
            returncode = process.wait(timeout=300)
        assert returncode == 0, b"".join(chunks)
        return b"".join(chunks).decode()

    shown = stderr_on_a_terminal("--out", "a")
    assert "Loading images" in shown and "Training compact" in shown
    assert "loss 0." in shown and "100%" in shown
    assert re.search(r"\d\d:\d\d:\d\d", shown)  # time left
    assert stderr_on_a_terminal("--out", "b", "--json").strip() == ""


def test_every_command_has_verbose_and_log_format():
    def commands(group, prefix=()):
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                yield from commands(command, (*prefix, name))
            else:
                yield (*prefix, name), command

    for name, command in commands(cli):
        options = {opt for param in command.params for opt in param.opts}
        assert {"-v", "--verbose", "--log-format"} <= options, name


def test_reviewer_defaults_to_the_login_name_then_unknown(monkeypatch):
    import getpass
    import pwd

    from inspector.cli.common import user_name as _user_name

    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(name, raising=False)
    assert _user_name() == pwd.getpwuid(os.getuid()).pw_name

    def no_user():
        raise OSError("no username set in the environment")

    monkeypatch.setattr(getpass, "getuser", no_user)
    assert _user_name() == "unknown"


def test_bundle_json_has_the_same_file_mode_as_the_model(tiny_bundle):
    umask = os.umask(0)
    os.umask(umask)
    model_mode = (tiny_bundle / "model.keras").stat().st_mode & 0o777
    assert (tiny_bundle / "bundle.json").stat().st_mode & 0o777 == model_mode == 0o666 & ~umask
