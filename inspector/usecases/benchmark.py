"""`inspector benchmark`: model speed, end-to-end daemon throughput and latency, memory, training time.

Absolute times are noisy on a shared machine; the model figures therefore compare the default
architecture with `seed003` on the same images in the same process, each round runs the burst
with no pictures or line output beside the burst with them (and with an MQTT broker, with the
MQTT output on), and the rounds' medians are reported. The daemon and the line's consumer it
is timed against are in `benchmark_processes`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

from ..cv_setup import cv2
from ..errors import InspectorError
from ..formats import list_images
from ..models.pipeline_files import resolve_pipeline
from ..preprocess import preprocess
from ..settings import Pipeline
from .benchmark_processes import Daemon, Listener


def model_speed(pipelines: dict[str, Pipeline], sources: list[Path], rounds: int = 3) -> dict:
    """Per pipeline: ms to read and preprocess one frame, and images/s and per-image latency of
    forward + error map + score at batch 1 and 32, on the same 32 source images."""
    from .. import models
    from ..models.components.running import score_arrays

    files = (sources * 32)[:32]
    results = {}
    for name, pipeline in pipelines.items():
        started = time.perf_counter()
        arrays = np.stack([preprocess(p, pipeline.preprocess) for p in files])
        entry = {"preprocess_ms_per_image": (time.perf_counter() - started) / len(files) * 1000}
        model = models.get(pipeline.model.architecture).benchmark_model(arrays, pipeline)
        for batch in (1, 32):
            images = arrays[: max(batch, min(len(arrays), 32))]
            score_arrays(model, images[:batch], pipeline.scoring, batch)  # warm-up: tracing, allocation
            best = float("inf")
            for _ in range(rounds):
                started = time.perf_counter()
                score_arrays(model, images, pipeline.scoring, batch)
                best = min(best, (time.perf_counter() - started) / len(images))
            entry[f"batch{batch}"] = {"images_per_s": 1.0 / best, "ms_per_image": best * 1000}
        results[name] = entry
    default, reference = list(results)[:2]
    results["ratio_batch32"] = results[default]["batch32"]["images_per_s"] / results[reference]["batch32"]["images_per_s"]
    results["ratio_batch1"] = results[default]["batch1"]["images_per_s"] / results[reference]["batch1"]["images_per_s"]
    return results


def make_line_images(sources: list[Path], folder: Path, count: int, size: int, seed: int = 0) -> list[Path]:
    """`count` unique full-size PNGs made from real images: resized, with faint sensor noise."""
    folder.mkdir(parents=True, exist_ok=True)
    bases = [cv2.resize(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE), (size, size)) for p in sources[:16]]

    def make(i: int) -> Path:
        rng = np.random.default_rng([seed, i])
        noise = rng.integers(-2, 3, (size, size), dtype=np.int16)
        image = np.clip(bases[i % len(bases)].astype(np.int16) + noise, 0, 255).astype(np.uint8)
        path = folder / f"part_{i:05d}.png"
        cv2.imwrite(str(path), image)
        return path

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return list(pool.map(make, range(count)))


def _line_args(mqtt_url: str | None, station: str) -> list[str]:
    return ["--station", station, "--mqtt", mqtt_url] if mqtt_url else []


def burst(model_dir: Path, files: list[Path], work: Path, mqtt_url: str | None = None, pictures: str = "all") -> dict:
    """All files renamed into the inbox at once: images/s from first arrival to last verdict
    (with `mqtt_url`: to the last verdict message received), and the daemon's time per stage
    (`watch --profile`). `pictures`: `watch --pictures`."""
    profile = work.parent / f"{work.name}-profile.json"
    station = f"benchmark-{work.name}"
    listener = Listener(mqtt_url, station) if mqtt_url else None
    try:
        daemon = Daemon(model_dir, work, ["--profile", str(profile), "--pictures", pictures,
                                          *_line_args(mqtt_url, station)])
        try:
            cpu_before, first = daemon.cpu_seconds(), time.time()
            for path in files:
                os.rename(path, daemon.inbox / path.name)
            daemon.wait_for(len(files), timeout=600)
            cpu = daemon.cpu_seconds() - cpu_before
            if listener:
                listener.wait_for(len(files), timeout=120)
                last = max(listener.received.values())
            else:
                last = max(daemon.scored_times().values())
            rss = daemon.peak_rss_mb()
        finally:
            code = daemon.stop()
    finally:
        if listener:
            listener.close()
    # Both cores busy: CPU seconds of the daemon per second of the burst (2.0 on two cores).
    return {"images": len(files), "seconds": last - first, "images_per_s": len(files) / (last - first),
            "cores_busy": cpu / (last - first), "cpu_ms_per_image": 1000 * cpu / len(files), "peak_rss_mb": rss, "exit_code": code, "mqtt": bool(mqtt_url),
            "pictures": pictures, "stages": json.loads(profile.read_text()) if profile.exists() else {}}


def _percentiles(latencies: np.ndarray, prefix: str) -> dict:
    return {f"{prefix}_p50": float(np.percentile(latencies, 50)), f"{prefix}_p95": float(np.percentile(latencies, 95)),
            f"{prefix}_p99": float(np.percentile(latencies, 99)), f"{prefix}_max": float(latencies.max())}


def steady(model_dir: Path, files: list[Path], work: Path, rate: float, mqtt_url: str | None = None) -> dict:
    """One file renamed in every 1/rate seconds: latency from complete file to recorded verdict
    (and, with `mqtt_url`, to its message received by a subscriber)."""
    profile = work.parent / f"{work.name}-profile.json"
    station = f"benchmark-{work.name}"
    listener = Listener(mqtt_url, station) if mqtt_url else None
    arrived: dict[str, float] = {}
    try:
        daemon = Daemon(model_dir, work, ["--profile", str(profile), *_line_args(mqtt_url, station)])
        try:
            start = time.monotonic()
            for i, path in enumerate(files):
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                os.rename(path, daemon.inbox / path.name)
                arrived[path.name] = time.time()
            daemon.wait_for(len(files), timeout=300)
            if listener:
                listener.wait_for(len(files), timeout=120)
            scored = daemon.scored_times()
            rss = daemon.peak_rss_mb()
        finally:
            code = daemon.stop()
    finally:
        if listener:
            listener.close()
    result = {"images": len(files), "rate": rate, "mqtt": bool(mqtt_url),
              **_percentiles(np.array([(scored[name] - t) * 1000 for name, t in arrived.items()]), "latency_ms"),
              "peak_rss_mb": rss, "exit_code": code,
              "stages": json.loads(profile.read_text()) if profile.exists() else {}}
    if listener:
        result.update(_percentiles(np.array([(listener.received[name] - t) * 1000 for name, t in arrived.items()]),
                                   "received_ms"))
    return result


def run_benchmark(
    images_dir: Path,
    pipeline_name: str = "screw",
    reference_name: str = "seed003",
    model_dir: Path | None = None,
    burst_count: int = 1000,
    steady_seconds: float = 30.0,
    rate: float = 10.0,
    frame_size: int = 1024,
    epochs: int | None = None,
    work: Path | None = None,
    progress: Callable[[str], None] = lambda message: None,
    mqtt_url: str | None = None,
    rounds: int = 3,
    checkpoint: Callable[[dict], None] = lambda result: None,
) -> dict:
    """With `mqtt_url` (a broker): the burst again with the daemon's MQTT output on, and the
    steady stream with it on, timed to each message received by a subscriber. `rounds`: the
    model timing and the daemon runs repeated, one round after the other, their medians reported;
    the bursts take turns at going first. `checkpoint` is handed the result so far once the
    arguments are checked (no round done) and after every round (`rounds_done` of
    `rounds_asked`, `complete` after the last): a failure in a late round loses none before it.
    `work`: a scratch folder, new or empty, kept afterwards; without it a temporary one, removed
    at the end (the result's `model_dir` is then None when the model was trained there)."""
    pipeline, reference = resolve_pipeline(pipeline_name), resolve_pipeline(reference_name)
    sources = list_images(images_dir)
    if not sources:
        raise InspectorError(f"no images in {images_dir}")
    if work is not None and Path(work).exists() and any(Path(work).iterdir()):
        # Its inboxes and databases would be another run's: refused before anything is made.
        raise InspectorError(f"--work {work} is not empty: give a new or empty folder")
    # A scratch folder of our own holds the frames (about half a gigabyte for the default burst),
    # and each run's inbox, archive and pictures: removed at the end, or every run would leave one behind (a removal that fails
    # is reported by name, not raised: the figures are measured by then). One given is kept.
    scratch = (contextlib.nullcontext(work) if work is not None
               else tempfile.TemporaryDirectory(prefix="inspector-bench-", ignore_cleanup_errors=True))

    def kept(result: dict) -> dict:  # a model trained in our own scratch folder is removed with it
        return {**result, "model_dir": None} if work is None and model_dir is None else result

    checkpoint({"machine": machine(), "pipeline": pipeline.name, "reference": reference.name,
                "rounds_done": 0, "rounds_asked": rounds, "complete": False})

    with scratch as folder:
        result = kept(_run(images_dir, pipeline, reference, sources, model_dir, burst_count, steady_seconds, rate,
                           frame_size, epochs, Path(folder), progress, mqtt_url, rounds,
                           lambda so_far: checkpoint(kept(so_far))))
    if work is None and Path(folder).exists():
        progress(f"could not remove all of the scratch folder {folder}")
    return result


def _run(images_dir: Path, pipeline: Pipeline, reference: Pipeline, sources: list[Path], model_dir: Path | None,
         burst_count: int, steady_seconds: float, rate: float, frame_size: int, epochs: int | None, work: Path,
         progress: Callable[[str], None], mqtt_url: str | None, rounds: int,
         checkpoint: Callable[[dict], None]) -> dict:
    result: dict = {"machine": machine(), "images_dir": str(images_dir), "pipeline": pipeline.name,
                    "reference": reference.name}
    pipelines = {pipeline.name: pipeline, reference.name: reference}

    if model_dir is None:
        progress(f"training {pipeline.name} on {len(sources)} images")
        from .training import load_folder, train_bundle

        model_dir = work / "model"
        started = time.perf_counter()
        loaded = load_folder(images_dir, pipeline, seed=0)
        _, summary = train_bundle(loaded, model_dir, pipeline, seed=0, epochs=epochs)
        result["training"] = {"images": len(loaded.paths), "epochs": summary["epochs"],
                              "seconds": time.perf_counter() - started}
    result["model_dir"] = str(model_dir)

    progress(f"making {burst_count} + {int(steady_seconds * rate)} images of {frame_size}x{frame_size}")
    burst_files = make_line_images(sources, work / "frames-burst", burst_count, frame_size, seed=1)
    steady_files = make_line_images(sources, work / "frames-steady", int(steady_seconds * rate), frame_size, seed=2)
    # Every run is handed the same frames (hard links: no gigabyte written again per run), and
    # nothing is removed before the last run: on a disk that trims what is freed (ext4 with
    # `discard`) a removed gigabyte slows the file writes of whatever runs next.
    # The bursts, each as (what it is called, its run folder, what the daemon is given). They take
    # turns at going first, one round after another: a machine that slows as a round goes on
    # (another job starting, the disk trimming what a run left) does not always cost the same one.
    bursts = [("burst_bare", "burst without pictures or line output", "burst-bare", {"pictures": "none"}),
              ("burst", "burst", "burst", {})]
    if mqtt_url:
        bursts.append(("burst_mqtt", "burst with MQTT", "burst-mqtt", {"mqtt_url": mqtt_url}))
    runs: list[dict] = []
    for n in range(1, rounds + 1):
        here = work / f"round-{n}" if rounds > 1 else work
        label = f" (round {n} of {rounds})" if rounds > 1 else ""
        run: dict = {}
        progress("model speed" + label)
        run["model"] = model_speed(pipelines, sources)
        turn = (n - 1) % len(bursts)
        run["order"] = []
        for key, title, name, given in bursts[turn:] + bursts[:turn]:
            progress(title + label)
            run[key] = burst(model_dir, _handed(burst_files, here / f"staging-{name}"), here / name, **given)
            run["order"].append(key)
        progress("steady stream" + (" with MQTT" if mqtt_url else "") + label)
        run["steady"] = steady(model_dir, _handed(steady_files, here / "staging-steady"), here / "steady", rate,
                               mqtt_url)
        runs.append(run)
        checkpoint(_so_far(result, runs, rounds))
    return _so_far(result, runs, rounds)


def _so_far(result: dict, runs: list[dict], rounds: int) -> dict:
    """The result of the rounds run so far: their medians, every round's runs, the peak memory."""
    summary = {**result, **_medians(runs), "rounds_done": len(runs), "rounds_asked": rounds,
               "complete": len(runs) == rounds}
    if rounds > 1:
        summary["rounds"] = runs
    summary["daemon_peak_rss_mb"] = max(r[key]["peak_rss_mb"] for r in runs
                                        for key in ("burst_bare", "burst", "burst_mqtt", "steady") if key in r)
    return summary


def _handed(frames: list[Path], folder: Path) -> list[Path]:
    """The frames as new names in `folder`, for one run to move into its inbox: hard links to
    the frames made once, or copies where the filesystem has no hard links."""
    folder.mkdir(parents=True)
    handed = []
    for frame in frames:
        target = folder / frame.name
        try:
            os.link(frame, target)
        except OSError:
            shutil.copyfile(frame, target)
        handed.append(target)
    return handed


def _lower_middle(items: list, key=None):
    """The median item of the rounds' (the lower of the two middle ones for an even count): a
    figure or a run as it was measured, never an average of two."""
    ordered = sorted(items, key=key)
    return ordered[(len(ordered) - 1) // 2]


def _median_run(runs: list[dict], key: str, measure: str) -> dict:
    """The run whose `measure` is the median of the rounds': its figures and its profile are
    reported as they were measured."""
    return _lower_middle([r[key] for r in runs], key=lambda run: run[measure])


def _medians(runs: list[dict]) -> dict:
    """`burst_bare`, `burst`, `burst_mqtt` and `steady`: each the median run by its headline figure; `model`:
    the median round by the speed ratio at batch 32; `medians`: each figure's median over the
    rounds, with every round's value beside it."""
    out = {"model": _median_run(runs, "model", "ratio_batch32"),
           "burst": _median_run(runs, "burst", "images_per_s"),
           "steady": _median_run(runs, "steady", "latency_ms_p99")}
    figures = {"burst_images_per_s": [r["burst"]["images_per_s"] for r in runs],
               "model_ratio_batch32": [r["model"]["ratio_batch32"] for r in runs],
               "steady_latency_ms_p99": [r["steady"]["latency_ms_p99"] for r in runs],
               "burst_cores_busy": [r["burst"]["cores_busy"] for r in runs]}
    if "burst_mqtt" in runs[0]:
        out["burst_mqtt"] = _median_run(runs, "burst_mqtt", "images_per_s")
        figures["burst_mqtt_images_per_s"] = [r["burst_mqtt"]["images_per_s"] for r in runs]
        # On against off within the same round, then the median of those.
        figures["mqtt_vs_off_percent"] = [100 * (r["burst_mqtt"]["images_per_s"] / r["burst"]["images_per_s"] - 1)
                                          for r in runs]
    if "burst_bare" in runs[0]:
        out["burst_bare"] = _median_run(runs, "burst_bare", "images_per_s")
        figures["burst_bare_images_per_s"] = [r["burst_bare"]["images_per_s"] for r in runs]
        # Every output on (the pictures, and the line's messages when measured) against none, same round.
        on = "burst_mqtt" if "burst_mqtt" in runs[0] else "burst"
        figures["outputs_vs_off_percent"] = [100 * (r[on]["images_per_s"] / r["burst_bare"]["images_per_s"] - 1)
                                             for r in runs]
    if "received_ms_p99" in runs[0]["steady"]:
        figures["steady_received_ms_p99"] = [r["steady"]["received_ms_p99"] for r in runs]
    out["medians"] = {name: {"median": float(_lower_middle(values)), "rounds": values} for name, values in figures.items()}
    return out


def machine() -> dict:
    import platform

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def table(result: dict) -> str:
    m = result["model"]
    p, r = result["pipeline"], result["reference"]
    medians = result["medians"]
    count = len(result.get("rounds", [])) or 1
    lines = [f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores", ""]
    if not result.get("complete", True):
        lines += [f"Partial: {result['rounds_done']} of the {result['rounds_asked']} rounds asked finished.", ""]
    if count > 1:
        lines += [f"Each figure is the median of {count} rounds run one after the other (of an even number, the "
                  "lower middle one), every round's figure in brackets; the model and profile lines are the median "
                  "round's.", ""]
    lines += ["| measure | value |", "|---|---|"]

    def rounds(name: str, fmt: str) -> str:
        values = medians.get(name, {}).get("rounds", [])
        return f" ({' / '.join(format(v, fmt) for v in values)})" if len(values) > 1 else ""

    for name in (p, r):
        lines.append(f"| read + preprocess one frame, {name} | {m[name]['preprocess_ms_per_image']:.1f} ms/image |")
        for b in ("batch1", "batch32"):
            lines.append(f"| model {name} {b.replace('batch', 'batch ')} | {m[name][b]['images_per_s']:.1f} images/s, "
                         f"{m[name][b]['ms_per_image']:.2f} ms/image |")
    lines.append(f"| {p} / {r} speed ratio | {m['ratio_batch32']:.2f}x at batch 32{rounds('model_ratio_batch32', '.2f')}, "
                 f"{m['ratio_batch1']:.2f}x at batch 1 |")
    if "training" in result:
        t = result["training"]
        lines.append(f"| training {p} (load, fit, calibrate, save) | {t['seconds']:.1f} s ({t['images']} images, {t['epochs']} epochs) |")
    b, s = result["burst"], result["steady"]
    lines.append(f"| burst of {b['images']} images | {b['images_per_s']:.1f} images/s{rounds('burst_images_per_s', '.1f')} |")
    if "cores_busy" in b:
        lines.append(f"| the daemon's CPU during the burst | {b['cores_busy']:.2f} of {result['machine']['cores']} cores "
                     f"busy{rounds('burst_cores_busy', '.2f')}, {b['cpu_ms_per_image']:.1f} ms of CPU per image |")
    if "burst_bare" in result:
        bare = result["burst_bare"]
        change = medians["outputs_vs_off_percent"]["median"]
        outputs = "pictures and MQTT" if "burst_mqtt" in result else "pictures"
        lines.append(f"| the same burst without pictures or line output | {bare['images_per_s']:.1f} images/s"
                     f"{rounds('burst_bare_images_per_s', '.1f')}; {outputs} on: {change:+.1f}% against none in the "
                     f"same round{rounds('outputs_vs_off_percent', '+.1f')} |")
    if "burst_mqtt" in result:
        on = result["burst_mqtt"]
        change = medians["mqtt_vs_off_percent"]["median"]
        lines.append(f"| the same burst, MQTT on (to the last message received) | {on['images_per_s']:.1f} images/s"
                     f"{rounds('burst_mqtt_images_per_s', '.1f')}; {change:+.1f}% against off in the same round"
                     f"{rounds('mqtt_vs_off_percent', '+.1f')} |")
    lines.append(f"| steady {s['rate']:g} images/s, {s['images']} images{', MQTT on' if s.get('mqtt') else ''} | "
                 f"file complete -> verdict committed: {_spread(s, 'latency_ms')}{rounds('steady_latency_ms_p99', '.0f')} |")
    if "received_ms_p50" in s:
        lines.append(f"| steady, file complete -> MQTT message received | {_spread(s, 'received_ms')}"
                     f"{rounds('steady_received_ms_p99', '.0f')} |")
    lines.append(f"| daemon peak RSS (highest of every run) | {result['daemon_peak_rss_mb']:.0f} MB |")
    stages = b.get("stages", {})
    if stages:
        lines += ["", f"Where the daemon's time went during the burst (per image; threads overlap, so the sum can "
                      f"exceed the wall time per image, {1000 / b['images_per_s']:.1f} ms):", "",
                  "| stage | ms per image | share |", "|---|---|---|"]
        total = sum(s["total_ms"] for s in stages.values())
        for name, s in stages.items():
            lines.append(f"| {name} | {s['total_ms'] / b['images']:.2f} | {100 * s['total_ms'] / total:.0f}% |")
    return "\n".join(lines)


def _spread(result: dict, prefix: str) -> str:
    return (f"p50 {result[prefix + '_p50']:.0f} ms, p95 {result[prefix + '_p95']:.0f} ms, "
            f"p99 {result[prefix + '_p99']:.0f} ms, max {result[prefix + '_max']:.0f} ms")
