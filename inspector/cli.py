"""The `inspector` command line. Each command's docstring is its --help text."""

from __future__ import annotations

import functools
import getpass
import json
import logging
import os
import signal
import sys
import time
import tomllib
import traceback
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace

import click
import numpy as np

from . import __version__, logs
from .errors import InspectorError
from .models.pipeline_files import pipeline_names
from .nuisance import NUISANCES
from .settings import POLICIES

log = logging.getLogger("inspector")


def logging_options(level: int = logging.WARNING):
    """-v and --log-format; logging (`inspector.logs`) is set up before the command runs.
    `level`: what the command logs without -v (the daemons report routine lines at INFO)."""
    def decorate(f):
        @functools.wraps(f)
        def wrapper(*args, verbose, log_format, **kwargs):
            logs.setup(verbose, log_format, level)
            return f(*args, **kwargs)

        wrapper = click.option("--log-format", type=click.Choice(logs.FORMATS), default="text", show_default=True,
                               help="Log lines on stderr as plain text or one JSON object per line.")(wrapper)
        more = "Debug log lines too (watch: one per image)." if level == logging.INFO else \
            "More log output (-vv for debug)."
        return click.option("-v", "--verbose", count=True, help=more)(wrapper)

    return decorate


def json_option(f):
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")(f)


def _progress(length: int, label: str, quiet: bool = False, **options):
    """A progress bar on stderr when it is a terminal; nothing when it is not, or when `quiet` (--json)."""
    if quiet or not sys.stderr.isatty():
        return nullcontext(SimpleNamespace(update=lambda *args: None))
    return click.progressbar(length=length, label=label, file=sys.stderr, **options)


def db_option(f):
    return click.option("--db", envvar="INSPECTOR_DB", default="inspector.db", show_default=True,
                        help="SQLite file or SQLAlchemy URL [env: INSPECTOR_DB].")(f)


def _store(db: str, create: bool = False):
    """The database; only `watch` creates a missing SQLite file, the other commands say it is missing."""
    from .store import Store

    return Store(db, must_exist=not create)


def _fail_cleanly(func):
    """Turn the errors the package raises on purpose into one-line click errors (exit code 1);
    anything else is a bug and keeps its traceback."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except InspectorError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


def _emit(data: dict, as_json: bool, text: str) -> None:
    click.echo(json.dumps(data, indent=2, default=float) if as_json else text)


def _user_name() -> str:
    """The login name (LOGNAME, USER, ... then the password database), "unknown" if there is none."""
    try:
        return getpass.getuser() or "unknown"
    except (OSError, KeyError, ImportError):
        return "unknown"


def _load(model_dir: Path):
    from .bundle import load_bundle

    return load_bundle(model_dir)


def _folder_images(folder: Path, what: str) -> list[Path]:
    from .preprocess import list_images

    paths = list_images(folder)
    if not paths:
        raise click.ClickException(f"no images found in {what} folder {folder}")
    return paths


def _score_folder(inferencer, paths: list[Path], folder: Path, what: str, quiet: bool, change_for=None,
                  unjudged: list | None = None):
    """Scores of every readable image of a folder (listed first with `_folder_images`), with a
    progress bar; errors are reported (and collected in `unjudged` if given)."""
    results = []
    with _progress(len(paths), f"Scoring {what}", quiet) as bar:
        for result in inferencer.judge(paths, change_for=change_for):
            results.append(result)
            bar.update(1)
    for r in results:
        if r.verdict == "error":
            click.echo(f"warning: skipped {r.path}: {r.error}", err=True)
            if unjudged is not None:
                unjudged.append({"path": str(r.path), "label": what, "error": r.error})
    scored = [r for r in results if r.score is not None]
    if not scored:
        raise click.ClickException(f"no readable images in {folder}")
    return scored, np.array([r.score for r in scored])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="inspector")
def cli():
    """Visual inspection of parts with a convolutional autoencoder trained on good parts.

    \b
    Typical session:
      inspector train sample_data/train/good --out models/screw
      inspector evaluate models/screw --good sample_data/test/good --defect sample_data/test/defect
      inspector score models/screw part.png --heatmaps heatmaps/
    """


@cli.command()
@click.argument("good_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write the model bundle to.")
@click.option("--pipeline", "-p", default="screw", show_default=True,
              help=f"Pipeline TOML file, or the name of a shipped one ({', '.join(pipeline_names())}).")
@click.option("--epochs", type=click.IntRange(1), help="Override the pipeline's number of epochs.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (split, weights, shuffling).")
@click.option("--force", is_flag=True, help="Overwrite an existing bundle in --out.")
@logging_options()
@json_option
@_fail_cleanly
def train(good_dir, out, pipeline, epochs, seed, force, as_json):
    """Train a model on a folder of good images and save a bundle.

    The default pipeline (screw) trains a denoising convolutional autoencoder on 80% of the
    images and their copies under line nuisances (uneven light, defocus, noise, ...), 150
    epochs, or more for a small set (at least 1,800 steps: 900 epochs for 40 screws): about
    6 minutes for 320 screws on two cores. The other 20% (and their nuisance
    copies) calibrate the threshold. screw-ae-memory adds the patch memory as a second opinion;
    screw-memory only remembers the images and calibrates by cross-validation (seconds).
    Either way the threshold comes from
    good images the model did not learn from, with the pipeline's threshold policy; the same
    seed and images give the same threshold. Prints the training time.

    \b
    Examples:
      inspector train ../shared/data/mvtec_screw/train/good --out models/screw
      inspector train sample_data/train/good --out m --pipeline seed003 --epochs 3
      inspector train good/ --out m --pipeline my_line.toml --seed 7 --json
    """
    from . import models
    from .bundle import META_FILE
    from .models.pipeline_files import resolve_pipeline

    started = time.perf_counter()
    config = resolve_pipeline(pipeline)
    spec = models.get(config.model.architecture)
    if epochs is not None and spec.planned_epochs(config.model.settings, epochs) is None:
        raise click.ClickException(f"--epochs: pipeline {config.name} ({spec.name}) is fitted without epochs")
    if (out / META_FILE).exists() and not force:
        raise click.ClickException(f"{out} already holds a model bundle; use --force to overwrite it")
    paths = _folder_images(good_dir, "good")
    bundle, summary = _train_on(paths, out, config, seed, epochs, as_json,
                                record={"folder": str(good_dir.resolve())})
    # Everything `train` did: reading and preprocessing the images, training, calibrating, saving.
    summary["total_seconds"] = round(time.perf_counter() - started, 1)
    fitted = (f"{summary['epochs']}, final loss {summary['final_loss']:.6f}" if summary["final_loss"] is not None
              else spec.no_epochs_summary)
    _emit(summary, as_json, "\n".join([
        f"Model saved to {out}",
        f"  pipeline       {summary['pipeline']} ({summary['architecture']})",
        f"  trained on     {summary['trained_on']} images; threshold from {summary['calibrated_on']}",
        f"  epochs         {fitted}",
        f"  training time  {summary['total_seconds']:.1f} s in all ({summary['train_seconds']:.1f} s fitting the model)",
        f"  threshold      {summary['threshold']:.6g} ({summary['policy']})",
    ]))


def _train_on(paths: list[Path], out: Path, config, seed: int, epochs: int | None, as_json: bool,
              record: dict | None = None):
    """Load the images (a progress bar), fit the pipeline's model (a bar per epoch) and save
    the bundle to `out`: `training.train_bundle`'s (bundle, summary)."""
    from . import models
    from .training import load_images, train_bundle

    spec = models.get(config.model.architecture)
    with _progress(len(paths), "Loading images", as_json) as bar:
        images = load_images(paths, config, on_image=lambda: bar.update(1), seed=seed)
    for path, reason in images.skipped:
        click.echo(f"warning: skipped {path}: {reason}", err=True)
    total = spec.planned_epochs(config.model.settings, epochs, len(images.arrays), config.model.holdout_fraction)
    if total is None:
        announcement = spec.no_epochs_announcement.format(count=len(images.arrays))
        if sys.stderr.isatty() and not as_json:
            click.echo(announcement, err=True)
        else:
            log.info(announcement)
        return train_bundle(images, out, config, seed=seed, record=record)
    # Epoch n/total, the share done, time left and the last epoch's loss.
    with _progress(total, f"Training {config.model.architecture}", as_json, item_show_func=lambda loss: loss,
                   show_pos=True) as bar:
        return train_bundle(images, out, config, seed=seed, epochs=epochs, record=record,
                            on_epoch=lambda epoch, loss: bar.update(1, f"loss {loss:.5f}"))


@cli.command()
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--from-reviews", is_flag=True,
              help="Learn from QA's decisions on parts MODEL_DIR judged (the only source so far; required).")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="New directory for the new bundle (never an existing bundle, never MODEL_DIR).")
@db_option
@click.option("--good-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The good images MODEL_DIR was trained on [default: the folder its bundle records].")
@click.option("--min-reviews", type=click.IntRange(1),
              help="False alarms QA must have dismissed (flagged parts labelled ok) before an update is trusted "
                   "[default: 5, review.MIN_REVIEWS].")
@logging_options()
@json_option
@_fail_cleanly
def update(model_dir, from_reviews, out, db, good_dir, min_reviews, as_json):
    """Train a new bundle that learns from QA: the parts it flagged that QA dismissed become good images.

    The new model is trained with MODEL_DIR's pipeline and seed on the images MODEL_DIR was
    trained on (the folder `train` recorded, or --good-dir), what earlier updates added, and the
    archived images of the parts QA labelled ok; it is calibrated as `train` does (the
    pipeline's threshold policy), and the defects QA confirmed, scored by the new model, are
    kept as its calibration defect scores. Prints, before (MODEL_DIR) and after (the new
    bundle): the threshold, the flags on the dismissed parts (now training images of the new
    model: judge it on new parts before switching), and the recall on the confirmed defects.

    NEW_DIR (--out) must be new or empty: a bundle is never overwritten (a daemon may be using
    MODEL_DIR). The new bundle records its parent's fingerprint (training.parent). Refused when
    QA dismissed fewer than --min-reviews false alarms: too few to trust.

    \b
    Examples:
      inspector update models/screw --from-reviews --out models/screw-v2 --db /srv/line1/inspector.db
      inspector update models/screw --from-reviews --out models/screw-v2 --good-dir /data/screw/train/good --json
      ln -sfn screw-v2 models/current.new && mv -T models/current.new models/current && systemctl reload inspector-watch
    """
    from . import learn
    from .review import MIN_REVIEWS

    if not from_reviews:
        raise click.ClickException("give --from-reviews: an update learns from QA's reviews")
    store = _store(db)
    try:
        plan = learn.plan(model_dir, out, store, good_dir, min_reviews or MIN_REVIEWS)
    finally:
        store.close()
    for warning in plan.warnings:
        click.echo(f"warning: {warning}", err=True)
    with learn.staging(out) as building:
        _, summary = _train_on(plan.paths, building, plan.pipeline, plan.seed, plan.epochs, as_json, plan.record)
        result = learn.finish(plan, building)
    result["trained"] = summary

    def flags(part: dict) -> str:
        return f"{part['flagged_before']}/{part['count']} -> {part['flagged_after']}/{part['judged_after']}"

    confirmed = result["confirmed"]
    lines = [f"New bundle {out} (model {result['fingerprint']}, parent {result['parent']}): trained on "
             f"{result['trained_on']} images, {result['added']} of them parts QA passed as good",
             f"Threshold {result['threshold_before']:.6g} -> {result['threshold']:.6g} ({result['policy']})",
             f"Flagged among the parts QA dismissed: {flags(result['dismissed'])} "
             "(now training images of the new model)"]
    if confirmed["count"]:
        lines.append(f"Recall on defects QA confirmed: {confirmed['recall_before']:.3f} -> "
                     + (f"{confirmed['recall_after']:.3f}" if confirmed["recall_after"] is not None else "-")
                     + f" (flagged {flags(confirmed)})")
    _emit(result, as_json, "\n".join(lines))


@cli.command()
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--good", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of good images to calibrate on (not the training images).")
@click.option("--defect", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of labelled defect images (needed by best_f1 and target_recall).")
@click.option("--from-reviews", is_flag=True,
              help="Use QA's decisions on parts this model judged: confirmed defects and dismissed false "
                   "alarms, with the bundle's own good calibration scores (and --good if given).")
@db_option
@click.option("--policy", type=click.Choice(POLICIES),
              help="Threshold policy (default: the pipeline's; best_f1 with --from-reviews when QA confirmed defects).")
@click.option("--k", type=float, help="mean_std: threshold = mean + k * std of good scores.")
@click.option("--factor", type=float, help="mean_multiple: threshold = factor * mean of good scores.")
@click.option("--false-reject-rate", type=click.FloatRange(0, 1),
              help="quantile: share of good parts allowed to be rejected.")
@click.option("--target-recall", type=click.FloatRange(0, 1),
              help="target_recall: share of defects that must be caught.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the score histogram PNG [default: MODEL_DIR/calibration.png; none with --dry-run].")
@click.option("--dry-run", is_flag=True, help="Show the new threshold; write nothing (a histogram only to --plot).")
@logging_options()
@json_option
@_fail_cleanly
def calibrate(model_dir, good, defect, from_reviews, db, policy, k, factor, false_reject_rate, target_recall, plot,
              dry_run, as_json):
    """Recompute a bundle's threshold from good (and defect) images, or from QA reviews.

    \b
    Policies:
      mean_std       mean + k * std of good scores (k = 2.5, 1, ...)
      mean_multiple  factor * mean of good scores ("2 x mean")
      quantile       keeps the false-reject rate on good images at or below a target
      best_f1        best F1 on good + defect images (needs --defect or reviews)
      target_recall  highest threshold that still catches the target share of defects

    The options are checked before any image is scored: a policy needing defects without
    --defect or confirmed reviews, a parameter of another policy, an empty folder.

    \b
    Examples:
      inspector calibrate models/screw --good line_good/ --policy mean_std --k 2.5
      inspector calibrate models/screw --good g/ --policy quantile --false-reject-rate 0.02
      inspector calibrate models/screw --good g/ --defect d/ --policy best_f1 --json
      inspector calibrate models/screw --from-reviews --db /srv/line1/inspector.db --dry-run
    """
    from .bundle import read_metadata, save_bundle
    from .calibration import recalibrate, recalibration_settings
    from .inference import Inferencer
    from .plots import score_histogram

    if good is None and not from_reviews:
        raise click.ClickException("give --good DIR, --from-reviews, or both")
    folders = {what: (folder, _folder_images(folder, what)) for what, folder in (("good", good), ("defect", defect))
               if folder is not None}
    parameters = dict(k=k, factor=factor, false_reject_rate=false_reject_rate, target_recall=target_recall)
    meta, reviews, few = read_metadata(model_dir), None, None  # the bundle.json, without loading the model
    if from_reviews:
        from .review import reviewed_scores, too_few_reviews

        store = _store(db)
        try:
            reviews = reviewed_scores(store, meta.fingerprint)
        finally:
            store.close()
        if not any(len(scores) for scores in reviews):
            raise click.ClickException(f"no reviewed parts judged by this model ({meta.fingerprint}) in {db}")
        few = too_few_reviews(len(reviews[0]) + len(reviews[1]),
                              f"parts of this model reviewed by QA ({len(reviews[0])} passed as good, "
                              f"{len(reviews[1])} confirmed defects)")
        if few:
            click.echo(f"warning: {few}", err=True)
    defects_expected = defect is not None or (reviews is not None and len(reviews[1]) > 0)
    recalibration_settings(meta.pipeline, policy, defects_expected, from_reviews, **parameters)
    bundle = _load(model_dir)
    scores, sources = {"good": np.array([]), "defect": np.array([])}, []
    if folders:
        with Inferencer(bundle) as inferencer:
            for what, (folder, paths) in folders.items():
                scores[what] = _score_folder(inferencer, paths, folder, what, as_json)[1]
                sources.append(f"{len(scores[what])} {what} images in {folder}")
    result = recalibrate(bundle, scores["good"], scores["defect"], sources, reviews, policy=policy, **parameters)
    if plot is None and not dry_run:
        plot = model_dir / "calibration.png"
    if plot is not None:
        score_histogram(plot, result.good, result.defect, result.new, f"{bundle.pipeline.name}: {result.policy}")
    if not dry_run:
        save_bundle(bundle)
    good_count, defect_count, before, after = len(result.good), len(result.defect), result.before, result.after
    data = {"old_threshold": result.old, "threshold": result.new, "policy": result.policy,
            "good": good_count, "defect": defect_count, "confusion": after.to_dict(),
            "confusion_before": before.to_dict(), "histogram": str(plot) if plot else None, "saved": not dry_run,
            "warnings": [few] if few else []}
    lines = [
        f"Threshold {result.old:.6g} -> {result.new:.6g} ({result.policy}){' [dry run, not saved]' if dry_run else ''}",
        f"From: {bundle.threshold_info['source']}",
        f"False rejects on good parts: {before.false_positive}/{good_count} -> {after.false_positive}/{good_count}",
    ]
    if defect_count:
        lines += [f"Expected recall on defects: {before.recall:.3f} -> {after.recall:.3f} "
                  f"({after.true_positive}/{defect_count} caught)"] + _confusion_lines(after) + [
            f"Precision {after.precision:.3f}  recall {after.recall:.3f}  F1 {after.f1:.3f}"]
    if plot is not None:
        lines.append(f"Histogram written to {plot}")
    _emit(data, as_json, "\n".join(lines))


def _confusion_lines(stats) -> list[str]:
    return [
        "                 judged defect  judged ok",
        f"  defect parts   {stats.true_positive:13d}  {stats.false_negative:9d}",
        f"  good parts     {stats.false_positive:13d}  {stats.true_negative:9d}",
    ]


def _failures_exit_with(code: int):
    """Make every failure of a command exit with `code`: a clear error, Ctrl-C, or a bug (its
    traceback printed), for commands whose exit codes 0 and 1 carry a result."""
    def decorate(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            try:
                return func(*args, **kwargs)
            except click.exceptions.Exit:
                raise
            except click.ClickException as exc:
                exc.exit_code = code
                raise
            except (click.Abort, KeyboardInterrupt):
                click.echo("Aborted!", err=True)
            except Exception:
                traceback.print_exc()
            raise click.exceptions.Exit(code)

        return wrapper

    return decorate


@cli.group("bundle")
def bundle_group():
    """Model bundles: check one, or accept a hand edit of its bundle.json.

    \b
    Examples:
      inspector bundle verify models/screw
      inspector bundle verify models/screw --accept-edits
    """


@bundle_group.command("verify")
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--accept-edits", is_flag=True,
              help="bundle.json was edited on purpose: check every field and record its new checksum.")
@logging_options()
@_fail_cleanly
def bundle_verify(model_dir, accept_edits):
    """Check a bundle as loading it does: bundle.json's fields and checksum, model.keras's
    checksum, the model loads in safe mode. A bundle.json changed by hand is refused everywhere
    until accepted here; a field that is not valid (a threshold of NaN) is never accepted.

    \b
    Examples:
      inspector bundle verify models/screw
      inspector bundle verify models/screw --accept-edits    # after editing bundle.json by hand
    """
    from .bundle import accept_edits as accept

    if accept_edits:
        accept(model_dir)
    bundle = _load(model_dir)
    click.echo(f"{model_dir}: bundle ok ({bundle.pipeline.name}, threshold {bundle.threshold:.6g}, "
               f"model {bundle.fingerprint}){'; edits accepted' if accept_edits else ''}")


@cli.command()
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--heatmaps", type=click.Path(file_okay=False, path_type=Path),
              help="Write NAME_heatmap.png (the error map of the upright part), NAME_overlay.jpg (the heat "
                   "drawn on the photo) and NAME_crop.png (the heat on the upright part) for each image into this "
                   "folder; images of the same name get their folders' names in front (good_000, defect_000).")
@click.option("--batch", type=click.IntRange(1, 1024), default=32, show_default=True, help="Images per model batch.")
@logging_options()
@json_option
@_failures_exit_with(2)
@_fail_cleanly
def score(model_dir, paths, heatmaps, batch, as_json):
    """Judge image files (or every image in folders): verdict, score and threshold.

    \b
    Exit status, for scripts:
      0  every image was judged ok
      1  every image was judged, and at least one is a defect
      2  an image could not be judged (unreadable; its line says why), or
         nothing could be (a bad model folder, no images, a wrong option)

    \b
    Examples:
      inspector score models/screw part_0001.png
      inspector score models/screw incoming/ --heatmaps heat/ --json
      inspector score models/screw part.png || echo "reject or check the part"
    """
    from .inference import Inferencer
    from .pictures import picture_stems
    from .preprocess import list_images

    files: list[Path] = []
    for path in paths:
        files.extend(list_images(path) if path.is_dir() else [path])
    if not files:
        raise click.ClickException("no images found")
    bundle = _load(model_dir)
    stems = picture_stems(files) if heatmaps is not None else {}
    rows = []
    with Inferencer(bundle) as inferencer, _progress(len(files), "Scoring", as_json) as bar:
        for result in inferencer.judge(files, batch_size=batch, keep_maps=heatmaps is not None):
            row = {"path": str(result.path), "verdict": result.verdict, "score": result.score,
                   "threshold": bundle.threshold, "error": result.error}
            if heatmaps is not None and result.error_map is not None:
                row.update(_write_pictures(inferencer, heatmaps, stems[result.path], result))
            log.info("%s %s %s", result.path, result.verdict, result.score)
            rows.append(row)
            bar.update(1)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        for row in rows:
            detail = f"error: {row['error']}" if row["verdict"] == "error" else (
                f"score {row['score']:.6g}  threshold {row['threshold']:.6g}")
            click.echo(f"{row['verdict']:7s} {detail}  {row['path']}")
    verdicts = {row["verdict"] for row in rows}
    sys.exit(2 if "error" in verdicts else 1 if "defect" in verdicts else 0)


def _write_pictures(inferencer, folder: Path, stem: str, result) -> dict:
    from .pictures import picture_paths

    heat, over, crop = picture_paths(folder, stem)
    inferencer.write_pictures(result, heat, over, crop)
    return {"heatmap": str(heat), "overlay": str(over), "crop_overlay": str(crop)}


@cli.command()
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--good", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Folder of good test images.")
@click.option("--defect", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Folder of defect test images.")
@click.option("--report", type=click.Path(file_okay=False, path_type=Path),
              help="Write roc.png, histogram.png, scores.csv and metrics.json into this folder.")
@click.option("--exposure-jitter", is_flag=True,
              help="Change every image's lighting at random (gain 0.85-1.15, offset -15..15 grey levels).")
@click.option("--nuisance", type=click.Choice(list(NUISANCES)),
              help="Apply a line nuisance to every image first: uneven light (light-radial, light-gradient, "
                   "light-spot), the part moved and turned (position), zoom +-8%, defocus, sensor noise, JPEG "
                   "quality 80-90, a 512x512 camera (resolution), dust on the background.")
@click.option("--jitter-seed", type=int, default=0, show_default=True,
              help="Seed of the exposure jitter and of the nuisance (with each file's name).")
@logging_options()
@json_option
@_fail_cleanly
def evaluate(model_dir, good, defect, report, exposure_jitter, nuisance, jitter_seed, as_json):
    """Measure detection quality on labelled good and defect images.

    Prints image ROC AUC with a 95% bootstrap interval, average precision, and the confusion
    matrix at the bundle's threshold. Images that cannot be judged (unreadable, no part, the
    part not wholly in view) are listed and counted, not scored.

    \b
    Examples:
      inspector evaluate models/screw --good test/good --defect test/defect --report report/
      inspector evaluate models/screw --good g/ --defect d/ --exposure-jitter --json
      inspector evaluate models/screw --good g/ --defect d/ --nuisance light-radial
    """
    from .evaluation import exposure_jitter as jitter, nuisance_change, quality, write_report
    from .inference import Inferencer

    if exposure_jitter and nuisance:
        raise click.ClickException("give --exposure-jitter or --nuisance, not both")
    good_paths, defect_paths = _folder_images(good, "good"), _folder_images(defect, "defect")
    bundle = _load(model_dir)
    change_for = jitter(jitter_seed) if exposure_jitter else nuisance_change(nuisance, jitter_seed) if nuisance else None
    unjudged: list[dict] = []
    with Inferencer(bundle) as inferencer:
        good_results, good_scores = _score_folder(inferencer, good_paths, good, "good", as_json, change_for, unjudged)
        defect_results, defect_scores = _score_folder(inferencer, defect_paths, defect, "defect", as_json,
                                                      change_for, unjudged)
    q = quality(good_scores, defect_scores, bundle.threshold)
    stats, (low, high) = q.confusion, q.auroc_ci95
    data = {
        "model_dir": str(model_dir), "pipeline": bundle.pipeline.name,
        "good": len(good_scores), "defect": len(defect_scores),
        "exposure_jitter": exposure_jitter, "nuisance": nuisance, "unjudged": unjudged,
        "auroc": q.auroc, "auroc_ci95": [low, high], "average_precision": q.average_precision,
        "threshold": bundle.threshold, "confusion": stats.to_dict(),
    }
    if report is not None:
        data["report"] = write_report(report, bundle.pipeline.name, bundle.threshold, good_results, defect_results,
                                      data)
    lines = [
        f"{bundle.pipeline.name}: {len(good_scores)} good, {len(defect_scores)} defect images"
        + (" (exposure jitter)" if exposure_jitter else f" (nuisance: {nuisance})" if nuisance else "")
        + (f"; {len(unjudged)} could not be judged" if unjudged else ""),
        f"AUROC {q.auroc:.3f} (95% bootstrap interval {low:.3f}-{high:.3f})",
        f"Average precision {q.average_precision:.3f}",
        f"At threshold {bundle.threshold:.6g}:",
        *_confusion_lines(stats),
        f"Recall {stats.recall:.3f}  precision {stats.precision:.3f}  "
        f"false rejects {stats.false_positive}/{len(good_scores)}",
    ]
    if report is not None:
        lines.append(f"Report written to {report}")
    _emit(data, as_json, "\n".join(lines))


def _config_keys(command: click.Command) -> dict[str, str]:
    """A command's parameters by the key a --config file names them with: the long option
    without its dashes (summary-every), or the argument's name (inbox)."""
    keys = {}
    for param in command.params:
        if param.name != "config":
            longs = [opt[2:] for opt in param.opts if opt.startswith("--")]
            keys[longs[0] if longs else param.name] = param.name
    return keys


def _read_config(ctx: click.Context, param: click.Parameter, path: Path | None) -> None:
    """--config FILE: the TOML file's values (keys: `watch`'s options) become the defaults of this
    command's options; the command line and environment variables override them."""
    if path is None:
        return
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise click.BadParameter(f"cannot read {path}: {exc}", ctx, param) from None
    keys = _config_keys(watch)
    unknown = sorted(key for key in data if key.replace("_", "-") not in keys)
    if unknown:
        raise click.BadParameter(f"{path}: unknown key {', '.join(map(repr, unknown))}; the keys are watch's "
                                 f"options: {', '.join(sorted(keys))}", ctx, param)
    own = {p.name for p in ctx.command.params}
    values = {keys[key.replace("_", "-")]: value for key, value in data.items()}
    ctx.default_map = {**(ctx.default_map or {}), **{name: v for name, v in values.items() if name in own}}


def config_option(f):
    return click.option("--config", type=click.Path(exists=True, dir_okay=False, path_type=Path), is_eager=True,
                        expose_value=False, callback=_read_config,
                        help="TOML file of watch's options (inbox = \"/srv/line1/inbox\", summary-every = 30, ...); "
                             "the command line and environment variables override it.")(f)


def drift_options(f):
    """--drift-window and --drift-limit, for watch and stats."""
    from .drift import DEFAULT_LIMIT, DEFAULT_WINDOW

    f = click.option("--drift-limit", type=click.FloatRange(0, min_open=True), default=DEFAULT_LIMIT,
                     show_default=True,
                     help="Drift when the median or 90th percentile of passed scores moved this many calibration "
                          "bands (p5-p95 of the calibration's good scores).")(f)
    return click.option("--drift-window", type=click.IntRange(0), default=DEFAULT_WINDOW, show_default=True,
                        help="Drift is judged on this many of the last parts of a station and model (0: off).")(f)


@cli.command()
@click.argument("inbox", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--model", "model_dir", envvar="INSPECTOR_MODEL", required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Model bundle directory [env: INSPECTOR_MODEL].")
@db_option
@click.option("--out", envvar="INSPECTOR_OUT", default="inspector-out", show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Where heatmaps, archive/, rejected/ and duplicates/ go [env: INSPECTOR_OUT].")
@click.option("--polling", is_flag=True, help="Poll the folder instead of OS events (network filesystems).")
@click.option("--batch", type=click.IntRange(1, 256), default=32, show_default=True,
              help="Most images scored together in one model call (a lone image is scored at once; a burst "
                   "goes faster in larger batches).")
@click.option("--on-done", type=click.Choice(["move", "keep"]), default="move", show_default=True,
              help="After the verdict: move the image to OUT/archive/<date>/, or leave it in the inbox.")
@click.option("--settle", type=click.FloatRange(0), default=0.5, show_default=True,
              help="Seconds a file of a format without a completeness rule must stay unchanged before it is "
                   "taken (PNG, JPEG, TIFF and BMP are taken once complete by their rule: at once when renamed "
                   "in or closed, else after 50 ms unchanged).")
@click.option("--incomplete-timeout", type=click.FloatRange(0), default=10.0, show_default=True,
              help="Seconds an empty, unfinished (by its format's rule) or unreadable file may stay unchanged "
                   "before it is rejected as such.")
@click.option("--summary-every", type=click.FloatRange(0.1), default=60.0, show_default=True,
              help="Seconds between one-line summaries on stderr.")
@click.option("--station", envvar="INSPECTOR_STATION", default=lambda: __import__("socket").gethostname(),
              help="Name of this line or machine, stored with every verdict [env: INSPECTOR_STATION; default: host name].")
@click.option("--claim-timeout", type=click.FloatRange(1), default=60.0, show_default=True,
              help="Seconds after which a claim left by a worker on another host is taken over.")
@click.option("--exit-when-idle", type=click.FloatRange(0.1),
              help="Exit after this many seconds with nothing to do (for batch runs and demos).")
@click.option("--profile", "profile_file", type=click.Path(dir_okay=False, path_type=Path),
              help="When stopping, write the time spent per stage (read, hash, claim, decode, preprocess, model, "
                   "score, pictures, commit, move) to this JSON file.")
@drift_options
@config_option
@logging_options(logging.INFO)
@_fail_cleanly
def watch(inbox, model_dir, db, out, polling, batch, on_done, settle, incomplete_timeout, summary_every,
          station, claim_timeout, exit_when_idle, drift_window, drift_limit, profile_file):
    """Judge every image that lands in INBOX, once, with verdicts in the database.

    Images already in INBOX are taken first, then every new one. A file is taken when it is
    complete (unchanged, and complete by its format's rule: PNG, JPEG, TIFF, BMP); names ending
    in .tmp or .part and dot-files are left alone until renamed. Each verdict is committed with its heatmap
    and overlay (OUT/heatmaps/), then the image moves to OUT/archive/<date>/. Unreadable files
    get an error row and move to OUT/rejected/; a second copy of an image already judged moves
    to OUT/duplicates/. SIGINT or SIGTERM finishes the batch in hand and exits 0. A restart
    after a crash finishes what was in flight, scoring nothing twice.

    Several daemons may watch one inbox with one database (PostgreSQL across machines): each
    image is claimed by exactly one of them, and a claim left by a worker that died is taken
    over (at once on the same host, after --claim-timeout from another host).

    Logs on stderr: the start, a summary every --summary-every seconds, errors and duplicates;
    one line per image with -v. deploy/ has a systemd unit running it with --config.

    Drift: the last --drift-window passed scores are compared with the bundle's calibration
    (median and 90th percentile, in calibration bands: p5-p95 of its good scores), and the
    shares of flagged parts and of part-in-view errors with the calibrated ones. One WARNING
    when the line drifts past the limits, one INFO line when it is back.

    SIGHUP (kill -HUP PID, systemctl reload) loads --model again between two batches (a
    symlink is followed anew): the new bundle is checked and its model run once first; if that
    fails, an ERROR and the old model goes on judging. Each part's row names its model.

    \b
    Examples:
      inspector watch /srv/line1/inbox --model models/screw --out /srv/line1/out -v
      INSPECTOR_DB=postgresql+psycopg://qa@db/inspector inspector watch inbox/ --model m
      inspector watch /mnt/share/inbox --model m --polling --station line2
      inspector watch --config /etc/inspector/watch.toml --log-format json
      inspector watch inbox/ --model models/current --drift-window 100 --drift-limit 0.4
      ln -sfn screw-v2 models/current.new && mv -T models/current.new models/current && kill -HUP PID
    """
    from .watcher import WatchOptions, Watcher

    if profile_file is not None and not os.access(profile_file.parent if str(profile_file.parent) else ".", os.W_OK):
        raise click.ClickException(f"--profile: cannot write into {profile_file.parent}")
    reload_early = []  # a SIGHUP while starting up (systemctl reload right after start) is not lost
    previous = signal.signal(signal.SIGHUP, lambda *_: reload_early.append(True))
    try:
        bundle = _load(Path(os.path.realpath(model_dir)))  # a symlink is resolved now, and again at each reload
        store = _store(db, create=True)
        try:
            options = WatchOptions(out=out, batch=batch, on_done=on_done, polling=polling, settle=settle,
                                   incomplete_timeout=incomplete_timeout, summary_every=summary_every,
                                   station=station, claim_timeout=claim_timeout, drift_window=drift_window,
                                   drift_limit=drift_limit)
            watcher = Watcher(inbox, bundle, store, options, model_source=model_dir)
            if reload_early:
                watcher.request_reload()
            log.info("watching %s with %s (%s, threshold %.6g); verdicts in %s", inbox, bundle.pipeline.name,
                     bundle.path, bundle.threshold, store.engine.url.render_as_string(hide_password=True))
            watcher.run(max_idle=exit_when_idle)
        finally:
            store.close()
    finally:
        signal.signal(signal.SIGHUP, previous)
        if profile_file is not None:
            from .timing import STAGE_TIMES

            try:
                profile_file.write_text(json.dumps(STAGE_TIMES.summary(), indent=2))
            except OSError as exc:  # never hide why the daemon stopped behind the profile's failure
                log.error("cannot write the profile to %s: %s", profile_file, exc)


@cli.command()
@click.argument("inbox", required=False, type=click.Path(path_type=Path))
@click.option("--model", "model_dir", envvar="INSPECTOR_MODEL", type=click.Path(path_type=Path),
              help="Model bundle directory [env: INSPECTOR_MODEL].")
@db_option
@click.option("--out", envvar="INSPECTOR_OUT", default="inspector-out", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="The daemon's output folder [env: INSPECTOR_OUT].")
@click.option("--polling", is_flag=True, help="The daemon polls the inbox (no warning for a network filesystem).")
@click.option("--min-free", type=click.FloatRange(0), default=1.0, show_default=True,
              help="Gigabytes that must be free where the inbox and the out folder are.")
@config_option
@logging_options()
@json_option
@_fail_cleanly
def doctor(inbox, model_dir, db, out, polling, min_free, as_json):
    """Check a station's set-up for `inspector watch`: one OK, WARN or FAIL line per check.

    The model bundle loads; the database is reachable and its schema migrated (a missing SQLite
    file is reported, not created); the inbox exists and the out folder can be made, both
    writable, on which filesystem (a network one wants --polling), with --min-free GB free.
    Give it the daemon's options or its --config file. Exit status 1 when a check fails.

    \b
    Examples:
      inspector doctor --config /etc/inspector/watch.toml
      inspector doctor /srv/line1/inbox --model models/screw --out /srv/line1/out --json
    """
    from .doctor import FAIL, check_station

    checks = check_station(inbox, model_dir, db, out, polling, int(min_free * 1e9))
    failed = any(c.status == FAIL for c in checks)
    _emit({"ok": not failed, "checks": [c.to_dict() for c in checks]}, as_json,
          "\n".join(f"{c.status:4}  {c.name:8}  {c.detail}" for c in checks))
    sys.exit(1 if failed else 0)


@cli.group()
def review():
    """QA review of inspections: list, show, label.

    \b
    Examples:
      inspector review list --flagged --since 12h
      inspector review show 42
      inspector review label 42 ok --note "dust on the lens"
    """


@review.command("list")
@db_option
@click.option("--flagged", is_flag=True, help="Only parts judged defective.")
@click.option("--verdict", type=click.Choice(["ok", "defect", "error"]), help="Only this verdict.")
@click.option("--unreviewed", is_flag=True, help="Only parts without a review.")
@click.option("--since", help="Received since a date (2026-11-23) or a span back from now (30m, 12h, 7d).")
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True)
@logging_options()
@json_option
@_fail_cleanly
def review_list(db, flagged, verdict, unreviewed, since, limit, as_json):
    """List inspections, newest first.

    \b
    Examples:
      inspector review list --flagged --since 7d
      inspector review list --verdict error --json
    """
    from .review import as_dict, parse_since, table

    store = _store(db)
    try:
        rows = store.inspections(flagged=flagged, verdict=verdict, since=parse_since(since),
                                 reviewed=False if unreviewed else None, limit=limit)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps([as_dict(r) for r in rows], indent=2))
    else:
        click.echo(table(rows) if rows else "no inspections match")


@review.command("show")
@click.argument("inspection_id", type=int)
@db_option
@logging_options()
@json_option
@_fail_cleanly
def review_show(inspection_id, db, as_json):
    """Show one inspection: image, heatmap and overlay paths, score, threshold, reviews.

    \b
    Example:
      inspector review show 42
    """
    from .review import as_dict

    store = _store(db)
    try:
        row = store.get(inspection_id)
    finally:
        store.close()
    if row is None:
        raise click.ClickException(f"no inspection with id {inspection_id}")
    data = as_dict(row)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for key in ("id", "source_name", "status", "verdict", "score", "threshold", "error_reason", "stored_path",
                "heatmap_path", "overlay_path", "crop_overlay_path", "received_at", "scored_at", "review"):
        if data[key] is not None:
            click.echo(f"{key:14} {data[key]}")
    for r in data["reviews"]:
        click.echo(f"{'reviewed':14} {r['created_at']} {r['label']} by {r['reviewer'] or 'unknown'}: {r['note']}")


@review.command("label")
@click.argument("inspection_id", type=int)
@click.argument("label", type=click.Choice(["defect", "ok"]))
@click.option("--note", default="", help="Why: what QA saw.")
@click.option("--reviewer", envvar="INSPECTOR_REVIEWER", default=lambda: _user_name(),
              help="Who reviewed [env: INSPECTOR_REVIEWER; default: the login name, else \"unknown\"].")
@db_option
@logging_options()
@_fail_cleanly
def review_label(inspection_id, label, note, reviewer, db):
    """Record a QA decision: LABEL is defect (confirmed) or ok (false alarm).

    \b
    Examples:
      inspector review label 42 defect --note "thread damaged"
      inspector review label 43 ok --note "dust, part is fine"
    """
    store = _store(db)
    try:
        store.add_review(inspection_id, label, reviewer=reviewer, note=note)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(f"inspection {inspection_id} labelled {label}")


@cli.command()
@db_option
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for index.html and its images.")
@click.option("--since", help="Received since a date or a span back from now (12h, 7d).")
@click.option("--all", "include_all", is_flag=True, help="Every inspection, not only flagged ones.")
@logging_options()
@_fail_cleanly
def report(db, out_dir, since, include_all):
    """Write a static HTML page of flagged parts with overlays, scores and review state.

    \b
    Examples:
      inspector report --out qa-report/
      inspector report --out today/ --since 24h
    """
    from .review import parse_since, write_report

    store = _store(db)
    try:
        rows = store.inspections(flagged=not include_all, since=parse_since(since))
    finally:
        store.close()
    rows = [r for r in rows if r.score is not None]
    page = write_report(rows, out_dir, "Flagged parts" if not include_all else "Inspections")
    click.echo(f"{len(rows)} parts in {page}")


@cli.command()
@db_option
@click.option("--out", envvar="INSPECTOR_OUT", default="inspector-out", show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="The daemon's output folder; only files under it are served [env: INSPECTOR_OUT].")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address (or name) to listen on; anything but loopback exposes the page to the network.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True)
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME",
              help="Another name the page is reached by (a DNS alias); requests naming any other host are refused.")
@click.option("--password", envvar="INSPECTOR_SERVE_PASSWORD",
              help="Ask every visitor for this password (HTTP basic auth, any user name) "
                   "[env: INSPECTOR_SERVE_PASSWORD, better than the command line].")
@logging_options(logging.INFO)
@_fail_cleanly
def serve(db, out, host, port, allow_hosts, password):
    """A local web page for QA: flagged parts, heatmaps, confirm or dismiss, summary.

    On a --host other than loopback, anyone who can reach the port can label parts: give
    a password (INSPECTOR_SERVE_PASSWORD), and use it on a trusted network (plain HTTP).

    \b
    Examples:
      inspector serve --db /srv/line1/inspector.db --out /srv/line1/out
      inspector serve --port 9000    # then open http://127.0.0.1:9000/
      INSPECTOR_SERVE_PASSWORD=... inspector serve --host 0.0.0.0 --allow-host qa-pc.plant.local
    """
    from werkzeug.serving import make_server

    from .web import create_app, is_loopback

    app = create_app(db, out, host=host, allowed_hosts=allow_hosts, password=password or None)
    server = make_server(host, port, app, threaded=True)
    if not is_loopback(host):
        click.echo("note: the QA page asks for a password (HTTP basic auth over plain HTTP: a trusted network only)"
                   if password else
                   f"warning: --host {host} makes the QA page reachable from the network: anyone who can reach "
                   f"port {server.server_port} can label parts. Set a password with --password or "
                   "INSPECTOR_SERVE_PASSWORD.", err=True)
    log.info("QA page on http://%s:%d/ (Ctrl-C to stop)", host, server.server_port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        app.config["STORE"].close()


@cli.command()
@db_option
@click.option("--since", help="Only inspections received since a date or a span back from now (12h, 7d).")
@drift_options
@logging_options()
@json_option
@_fail_cleanly
def stats(db, since, drift_window, drift_limit, as_json):
    """Per station and model: images, defects, errors, throughput, score percentiles and drift.

    Drift compares the newest rows of each station and model with the calibration of the
    model's bundle (its path as the daemon loaded it): the median and 90th percentile of the
    last --drift-window passed scores, in calibration bands (p5-p95 of its good scores), and
    the shares of flagged parts and of part-in-view errors against the calibrated ones; with
    the last hour's counts against the expected ones. As `inspector watch` judges it.

    \b
    Examples:
      inspector stats --since 24h
      inspector stats --db postgresql+psycopg://qa@db/inspector --json
      inspector stats --json --drift-window 100 | jq '.[] | {station, model, drift: .drift.drifting}'
    """
    from .review import parse_since, station_stats, stats_table

    store = _store(db)
    try:
        rows = station_stats(store, parse_since(since), drift_window, drift_limit)
    finally:
        store.close()
    click.echo(json.dumps(rows, indent=2) if as_json else (stats_table(rows) if rows else "no inspections"))


@cli.command()
@click.option("--images", "images_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default="sample_data/train/good", show_default=True,
              help="Real images to build the test frames from (and to train on).")
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
@click.option("--epochs", type=click.IntRange(1), help="Override the pipeline's epochs when training.")
@click.option("--out", "json_out", type=click.Path(dir_okay=False, path_type=Path), default="benchmark.json",
              show_default=True, help="Where to write the full results as JSON.")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path),
              help="Scratch folder (default: a new temporary folder).")
@logging_options()
@json_option
@_fail_cleanly
def benchmark(images_dir, model_dir, pipeline, reference, burst_count, steady_seconds, rate, frame_size, epochs,
              json_out, work, as_json):
    """Measure speed: model images/s, daemon burst throughput and steady-stream latency.

    Model scoring is timed for PIPELINE and REFERENCE on the same images in the same process
    (batch 1 and 32). The real daemon then judges a burst of full-size PNGs dropped at once
    (images/s from first arrival to last verdict) and a steady stream (latency p50/p95/p99 from
    the file being complete to its verdict), and its peak memory is read.

    \b
    Examples:
      inspector benchmark
      inspector benchmark --images ../shared/data/mvtec_screw/train/good --out bench.json
      inspector benchmark --burst 50 --steady-seconds 5 --frame-size 512 --json
    """
    from .benchmark import run_benchmark, table

    result = run_benchmark(images_dir, pipeline, reference, model_dir, burst_count, steady_seconds, rate,
                           frame_size, epochs, work, progress=lambda m: click.echo(f"... {m}", err=True))
    json_out.write_text(json.dumps(result, indent=2))
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(table(result))
        click.echo(f"\nFull results in {json_out}")


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
