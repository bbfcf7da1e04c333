import json
import os
import sqlite3
import tempfile

import pytest
from click.testing import CliRunner

from inspector.cli import cli
from conftest import SAMPLE, TINY_PIPELINE
from test_line import broker  # noqa: F401


def small_pipelines(folder):
    """The tiny pipeline measured and a small seed003 as its reference."""
    tiny = folder / "tiny.toml"
    tiny.write_text(TINY_PIPELINE)
    reference = folder / "seed003_small.toml"
    reference.write_text('name = "seed003-64"\n[preprocess]\nsize = 64\nnormalize = "unit"\n'
                         '[model]\narchitecture = "seed003"\nepochs = 1\n')
    return tiny, reference


def test_benchmark_runs_and_reports_every_field(tmp_path, monkeypatch):
    tiny, reference = small_pipelines(tmp_path)
    out = tmp_path / "bench.json"
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    # The caller's own daemon settings do not reach the daemons measured: every burst but the bare
    # one still writes its pictures.
    monkeypatch.setenv("INSPECTOR_PICTURES", "none")
    result = CliRunner().invoke(cli, [
        "benchmark", "--images", str(SAMPLE / "train" / "good"), "--pipeline", str(tiny), "--reference",
        str(reference), "--burst", "12", "--steady-seconds", "1", "--rate", "5", "--frame-size", "128",
        "--epochs", "1", "--out", str(out), "--rounds", "1",
    ])
    assert result.exit_code == 0, result.output
    # Without --work the frames, inboxes and model went to a temporary folder, removed at the end.
    assert not list(temporary.glob("inspector-bench-*"))
    assert "images/s" in result.stdout and "verdict committed: p50" in result.stdout
    assert "MQTT" not in result.stdout
    data = json.loads(out.read_text())
    for name in ("tiny", "seed003-64"):
        for batch in ("batch1", "batch32"):
            assert data["model"][name][batch]["images_per_s"] > 0
            assert data["model"][name][batch]["ms_per_image"] > 0
        assert data["model"][name]["preprocess_ms_per_image"] > 0
    assert data["model"]["ratio_batch32"] > 0 and data["model"]["ratio_batch1"] > 0
    assert data["training"]["epochs"] == 1 and data["training"]["seconds"] > 0
    assert data["model_dir"] is None
    assert data["burst"]["images"] == 12 and data["burst"]["images_per_s"] > 0 and data["burst"]["exit_code"] == 0
    # The same burst with no pictures and no line output: no picture stage, the outputs' cost beside it.
    bare = data["burst_bare"]
    assert bare["images"] == 12 and bare["pictures"] == "none" and bare["exit_code"] == 0
    assert "pictures" not in bare["stages"] and data["burst"]["stages"]["pictures"]["images"] == 12
    assert data["medians"]["outputs_vs_off_percent"]["median"] == pytest.approx(
        100 * (data["burst"]["images_per_s"] / bare["images_per_s"] - 1))
    assert "| the same burst without pictures or line output |" in result.stdout
    steady = data["steady"]
    assert steady["images"] == 5 and steady["exit_code"] == 0
    assert steady["stages"]["pictures"]["images"] == 5  # INSPECTOR_PICTURES=none did not reach its daemon
    assert 0 < steady["latency_ms_p50"] <= steady["latency_ms_p95"] <= steady["latency_ms_p99"] <= steady["latency_ms_max"]
    assert data["daemon_peak_rss_mb"] > 0
    assert data["machine"]["cores"] >= 1
    # Where the daemon's time went: every stage an image passes through, counted per image.
    stages = data["burst"]["stages"]
    assert list(stages) == ["read", "hash", "claim", "decode", "preprocess", "model", "score", "pictures", "commit",
                            "move"]
    for name in ("hash", "claim", "decode", "preprocess", "model", "score", "pictures", "commit", "move"):
        assert stages[name]["images"] == 12 and stages[name]["ms_per_image"] > 0, name
    assert "Where the daemon's time went" in result.stdout and "| model |" in result.stdout
    assert "rounds" not in data and "median of" not in result.stdout


def test_benchmark_with_a_broker_times_the_burst_and_the_messages_received_in_rounds(broker, tiny_bundle,  # noqa: F811
                                                                                     tmp_path):
    mosquitto = broker()
    tiny, reference = small_pipelines(tmp_path)
    out, work = tmp_path / "bench.json", tmp_path / "work"
    result = CliRunner().invoke(cli, [
        "benchmark", "--images", str(SAMPLE / "train" / "good"), "--model", str(tiny_bundle), "--pipeline", str(tiny),
        "--reference", str(reference), "--burst", "12", "--steady-seconds", "1", "--rate", "5", "--frame-size", "128",
        "--out", str(out), "--work", str(work), "--mqtt", f"mqtt://127.0.0.1:{mosquitto.port}", "--rounds", "2",
    ])
    assert result.exit_code == 0, result.output
    assert "MQTT on" in result.stdout and "file complete -> MQTT message received | p50" in result.stdout
    data = json.loads(out.read_text())
    assert (data["burst"]["mqtt"], data["burst_mqtt"]["mqtt"]) == (False, True)
    assert data["burst_mqtt"]["images"] == 12 and data["burst_mqtt"]["images_per_s"] > 0
    steady = data["steady"]
    assert steady["mqtt"] and steady["images"] == 5
    # A message is sent after its verdict is committed: received no sooner.
    assert steady["received_ms_p50"] >= steady["latency_ms_p50"] > 0
    assert steady["received_ms_max"] >= steady["latency_ms_max"]
    assert data["model_dir"] == str(tiny_bundle)
    # Two rounds, one after the other: each figure is their median (the lower middle of two, a
    # measured one) with every round's value beside it, and the runs reported are those runs.
    assert len(data["rounds"]) == 2
    bursts = [run["burst_mqtt"]["images_per_s"] for run in data["rounds"]]
    assert data["medians"]["burst_mqtt_images_per_s"] == {"median": min(bursts), "rounds": bursts}
    assert data["burst_mqtt"]["images_per_s"] == min(bursts)
    changes = [100 * (run["burst_mqtt"]["images_per_s"] / run["burst"]["images_per_s"] - 1) for run in data["rounds"]]
    assert data["medians"]["mqtt_vs_off_percent"]["rounds"] == changes
    # Pictures and MQTT on against neither, in the same round.
    both = [100 * (run["burst_mqtt"]["images_per_s"] / run["burst_bare"]["images_per_s"] - 1) for run in data["rounds"]]
    assert data["medians"]["outputs_vs_off_percent"]["rounds"] == both
    assert "median of 2 rounds" in result.stdout and f"({bursts[0]:.1f} / {bursts[1]:.1f})" in result.stdout
    # Every run was handed the frames made once, as hard links (one per run beside the frame made),
    # and a scratch folder given is kept whole: each round's inboxes, databases and profiles.
    made = sorted(p.name for p in (work / "frames-burst").iterdir())
    assert len(made) == 12 and (work / "frames-burst" / made[0]).stat().st_nlink == 1 + 2 * 3
    for n in (1, 2):
        began = {}
        for run in ("burst-bare", "burst", "burst-mqtt"):
            with sqlite3.connect(work / f"round-{n}" / run / "inspector.db") as conn:
                judged = sorted(name for (name,) in conn.execute(
                    "SELECT source_name FROM inspections WHERE status = 'done'"))
                began[run.replace("-", "_")] = conn.execute("SELECT min(received_at) FROM inspections").fetchone()[0]
            assert judged == made, (n, run)
        assert (work / f"round-{n}" / "burst-mqtt-profile.json").is_file()
        # The bursts take turns at going first, and ran in the order the round records.
        assert sorted(began, key=began.get) == data["rounds"][n - 1]["order"]
    assert [run["order"] for run in data["rounds"]] == [["burst_bare", "burst", "burst_mqtt"],
                                                        ["burst", "burst_mqtt", "burst_bare"]]
    assert (data["rounds_done"], data["rounds_asked"]) == (2, 2)


# One pipeline's model timing as `model_speed` reports it, for fake rounds.
MODEL_TIMED = {"preprocess_ms_per_image": 5.0, "batch1": {"images_per_s": 100.0, "ms_per_image": 10.0},
               "batch32": {"images_per_s": 500.0, "ms_per_image": 2.0}}


def test_each_round_is_written_as_it_ends_and_a_later_failure_keeps_it(tmp_path, monkeypatch):
    from inspector.usecases import benchmark

    calls = {"steady": 0, "bursts": []}

    def fake_burst(model_dir, files, work, mqtt_url=None, pictures="all"):
        calls["bursts"].append(work.name)
        return {"images_per_s": 100.0 if pictures == "none" else 90.0, "cores_busy": 1.8, "peak_rss_mb": 500.0,
                "pictures": pictures, "mqtt": bool(mqtt_url), "images": len(files), "cpu_ms_per_image": 10.0}

    def fake_steady(model_dir, files, work, rate, mqtt_url=None):
        calls["steady"] += 1
        if calls["steady"] == 3:
            raise RuntimeError("the daemon did not start")
        p99 = 20.0 + calls["steady"]
        return {"latency_ms_p99": p99, "peak_rss_mb": 600.0, "rate": rate, "images": len(files),
                **{f"latency_ms_{k}": p99 for k in ("p50", "p95", "max")}}

    def fake_model_speed(pipelines, sources):
        return {"ratio_batch32": 6.0, "ratio_batch1": 2.0, **{name: MODEL_TIMED for name in pipelines}}

    monkeypatch.setattr(benchmark, "model_speed", fake_model_speed)
    monkeypatch.setattr(benchmark, "burst", fake_burst)
    monkeypatch.setattr(benchmark, "steady", fake_steady)
    tiny, reference = small_pipelines(tmp_path)
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(cli, [
        "benchmark", "--images", str(SAMPLE / "train" / "good"), "--model", str(tmp_path), "--pipeline", str(tiny),
        "--reference", str(reference), "--burst", "3", "--steady-seconds", "1", "--rate", "2", "--frame-size", "64",
        "--out", str(out), "--work", str(tmp_path / "work"), "--rounds", "3",
    ])
    assert result.exit_code == 1 and "the daemon did not start" in str(result.exception)
    data = json.loads(out.read_text())  # the two rounds that ended, as they ended
    assert (data["rounds_done"], data["rounds_asked"], data["complete"]) == (2, 3, False)
    assert "Partial: 2 of the 3 rounds asked finished." in result.output  # their table, then the error
    umask = os.umask(0o022)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # as a file written plainly, though through a temporary one
    assert [run["steady"]["latency_ms_p99"] for run in data["rounds"]] == [21.0, 22.0]
    assert data["medians"]["steady_latency_ms_p99"]["rounds"] == [21.0, 22.0]
    assert [run["order"] for run in data["rounds"]] == [["burst_bare", "burst"], ["burst", "burst_bare"]]
    # The order recorded is the order the bursts were run in (round 3's ran before its steady stream failed).
    assert calls["bursts"] == ["burst-bare", "burst", "burst", "burst-bare", "burst-bare", "burst"]


def test_a_first_round_that_fails_leaves_no_earlier_figures_behind(tmp_path, monkeypatch):
    from inspector.usecases import benchmark

    def failing_burst(model_dir, files, work, mqtt_url=None, pictures="all"):
        raise RuntimeError("the daemon did not start")

    monkeypatch.setattr(benchmark, "model_speed", lambda pipelines, sources: {"ratio_batch32": 6.0})
    monkeypatch.setattr(benchmark, "burst", failing_burst)
    tiny, reference = small_pipelines(tmp_path)
    out = tmp_path / "bench.json"
    out.write_text('{"burst": {"images_per_s": 999.0}}')  # an earlier run's
    result = CliRunner().invoke(cli, [
        "benchmark", "--images", str(SAMPLE / "train" / "good"), "--model", str(tmp_path), "--pipeline", str(tiny),
        "--reference", str(reference), "--burst", "3", "--steady-seconds", "1", "--rate", "2", "--frame-size", "64",
        "--out", str(out), "--work", str(tmp_path / "work"), "--rounds", "2",
    ])
    assert result.exit_code == 1 and "the daemon did not start" in str(result.exception)
    data = json.loads(out.read_text())  # replaced at the start: no round done
    assert (data["rounds_done"], data["rounds_asked"], data["complete"]) == (0, 2, False) and "burst" not in data
    assert "Partial" not in result.output  # no round ended: no table

    # Arguments refused before anything is measured leave an earlier --out as it was.
    out.write_text('{"burst": {"images_per_s": 999.0}}')
    result = CliRunner().invoke(cli, [
        "benchmark", "--images", str(SAMPLE / "train" / "good"), "--model", str(tmp_path), "--pipeline", str(tiny),
        "--reference", str(reference), "--out", str(out), "--work", str(tmp_path / "work"),
    ])
    assert result.exit_code == 1 and "is not empty" in result.output
    assert json.loads(out.read_text()) == {"burst": {"images_per_s": 999.0}}


def test_a_partial_result_says_so_in_its_table():
    from inspector.usecases.benchmark import _so_far, table

    def run(burst):
        return {"model": {"ratio_batch32": 6.0, "ratio_batch1": 2.0, **{name: MODEL_TIMED for name in ("a", "b")}},
                "burst": {"images_per_s": burst, "images": 10, "cores_busy": 1.5, "cpu_ms_per_image": 10.0,
                          "peak_rss_mb": 500.0},
                "steady": {"rate": 10, "images": 5, "peak_rss_mb": 400.0,
                           **{f"latency_ms_{k}": 20.0 for k in ("p50", "p95", "p99", "max")}},
                "order": ["burst"]}

    result = _so_far({"machine": {"cpu": "test", "cores": 2}, "pipeline": "a", "reference": "b"},
                     [run(150.0), run(160.0)], 3)
    assert result["complete"] is False
    assert "Partial: 2 of the 3 rounds asked finished." in table(result)
    result = _so_far({"machine": {"cpu": "test", "cores": 2}, "pipeline": "a", "reference": "b"}, [run(150.0)], 1)
    assert result["complete"] is True and "Partial" not in table(result)


def test_the_median_run_is_reported_as_it_was_measured():
    from inspector.usecases.benchmark import _medians

    def run(burst, ratio, p99):
        return {"model": {"ratio_batch32": ratio}, "burst": {"images_per_s": burst, "cores_busy": 1.5},
                "steady": {"latency_ms_p99": p99}}

    out = _medians([run(150.0, 5.5, 30.0), run(170.0, 4.0, 20.0), run(160.0, 6.0, 90.0)])
    assert out["burst"]["images_per_s"] == 160.0
    assert out["model"]["ratio_batch32"] == 5.5
    assert out["steady"]["latency_ms_p99"] == 30.0
    assert out["medians"]["burst_images_per_s"] == {"median": 160.0, "rounds": [150.0, 170.0, 160.0]}
    assert "burst_mqtt" not in out and "mqtt_vs_off_percent" not in out["medians"]


def test_benchmark_outside_the_repository_asks_for_images(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["benchmark", "--burst", "1"])
    assert result.exit_code == 2
    assert "give --images: a folder of real part images (the default, sample_data/train/good, is only there " \
           "in the repository's root" in result.output
    assert not (tmp_path / "benchmark.json").exists()


def test_benchmark_refuses_a_work_folder_in_use(tmp_path):
    work = tmp_path / "work"
    (work / "inbox").mkdir(parents=True)
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(cli, ["benchmark", "--images", str(SAMPLE / "train" / "good"), "--burst", "1",
                                      "--work", str(work), "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert f"--work {work} is not empty: give a new or empty folder" in result.output
    assert sorted(p.name for p in work.iterdir()) == ["inbox"] and not out.exists()
