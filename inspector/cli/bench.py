"""The benchmark command: model speed, the daemon's throughput and latency, memory."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .common import fail_cleanly, json_option, logging_options

# The repository's sample screws: the default --images when run from the repository's root.
SAMPLE_IMAGES = Path("sample_data/train/good")


def _sample_images() -> Path:
    if not SAMPLE_IMAGES.is_dir():
        raise click.UsageError(f"give --images: a folder of real part images (the default, {SAMPLE_IMAGES}, "
                               f"is only there in the repository's root, and {Path.cwd()} is not it)")
    return SAMPLE_IMAGES


@click.command()
@click.option("--images", "images_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Real images to build the test frames from (and to train on) [default: "
                   f"{SAMPLE_IMAGES}, in the repository's root only].")
@click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Bundle for the daemon runs; without it the pipeline is trained on --images (and timed).")
@click.option("--pipeline", "-p", default="screw", show_default=True, help="The pipeline measured.")
@click.option("--reference", default="seed003", show_default=True, help="The pipeline compared against.")
@click.option("--burst", "burst_count", type=click.IntRange(1), default=1000, show_default=True,
              help="Images dropped at once into the watched inbox.")
@click.option("--steady-seconds", type=click.FloatRange(0.1), default=30.0, show_default=True,
              help="Length of the steady stream.")
@click.option("--rate", type=click.FloatRange(0.1), default=10.0, show_default=True,
              help="Images per second in the steady stream.")
@click.option("--frame-size", type=click.IntRange(16, 8192), default=1024, show_default=True,
              help="Width and height of the generated PNG frames.")
@click.option("--rounds", type=click.IntRange(1), default=3, show_default=True,
              help="Times the model timing and the daemon runs are repeated, one round after the other; "
                   "each figure reported is their median.")
@click.option("--epochs", type=click.IntRange(1), help="Override the pipeline's epochs when training.")
@click.option("--out", "json_out", type=click.Path(dir_okay=False, path_type=Path), default="benchmark.json",
              show_default=True, help="Where to write the full results as JSON.")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path),
              help="Scratch folder for the frames, inboxes and model, new or empty, kept afterwards "
                   "(default: a new temporary folder, removed at the end).")
@click.option("--mqtt", "mqtt_url", envvar="INSPECTOR_MQTT", metavar="URL",
              help="A broker (mqtt://[user[:password]@]host[:port]; password also from INSPECTOR_MQTT_PASSWORD): "
                   "the burst again with the MQTT output on, and the steady stream timed to each message "
                   "received [env: INSPECTOR_MQTT].")
@logging_options()
@json_option
@fail_cleanly
def benchmark(images_dir, model_dir, pipeline, reference, burst_count, steady_seconds, rate, frame_size, rounds,
              epochs, json_out, work, mqtt_url, as_json):
    """Measure speed: model images/s, daemon burst throughput and steady-stream latency.

    Model scoring is timed for PIPELINE and REFERENCE on the same images in the same process
    (batch 1 and 32). The real daemon then judges a burst of full-size PNGs dropped at once
    (images/s from first arrival to last verdict), the same burst with no pictures written and
    no line output (--pictures none: what the outputs cost), and a steady stream (latency
    p50/p95/p99 from the file being complete to its verdict), and its peak memory is read. With --mqtt the burst
    runs again with the daemon publishing each verdict, timed to the last message a subscriber
    received, and the steady stream is timed to each message received as well.

    All of it runs --rounds times, one round after the other, the bursts taking turns at going
    first, and each figure is reported as the median of the rounds with every round's value
    beside it (a shared machine is noisy). --out is replaced at the start (no round done) and
    written after every round, "complete": false until the last; when a round fails, the
    table of those that ended is printed on stderr before the error.
    The frames are made once and every run is handed the same ones; nothing is removed before
    the last round (the temporary scratch folder then; a --work folder is kept).

    \b
    Examples:
      inspector benchmark
      inspector benchmark --images ../shared/data/mvtec_screw/train/good --out bench.json
      inspector benchmark --burst 50 --steady-seconds 5 --frame-size 512 --rounds 1 --json
      inspector benchmark --model models/screw --mqtt mqtt://127.0.0.1
    """
    from ..bundle import write_json_atomic
    from ..usecases.benchmark import run_benchmark, table

    images_dir = images_dir or _sample_images()
    written: list[dict] = []

    def write(result: dict) -> None:
        """At the start (no round done: an earlier run's figures are not left to look like this
        one's) and after every round, so a failure later loses none before it; whole or not at all."""
        write_json_atomic(json_out, result, sort_keys=False)
        written[:] = [result]

    try:
        result = run_benchmark(images_dir, pipeline, reference, model_dir, burst_count, steady_seconds, rate,
                               frame_size, epochs, work, progress=lambda m: click.echo(f"... {m}", err=True),
                               mqtt_url=mqtt_url, rounds=rounds, checkpoint=write)
    except Exception:
        if written and written[0].get("rounds_done"):  # the rounds that ended, before the error is said
            try:
                click.echo(table(written[0]), err=True)
            except Exception:  # a table that cannot be drawn does not hide the error
                pass
            click.echo(f"\nThe rounds that ended are in {json_out}", err=True)
        raise
    write(result)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(table(result))
        click.echo(f"\nFull results in {json_out}")


COMMANDS = (benchmark,)
