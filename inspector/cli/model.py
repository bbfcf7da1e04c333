"""Commands on models: train, update, calibrate, score, evaluate, bundle verify."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import click

from ..logs import PROGRESS
from ..models.pipeline_files import pipeline_names
from ..nuisance_names import NAMES as NUISANCE_NAMES
from ..review import MIN_REVIEWS
from ..settings import POLICIES
from .common import (
    confusion_lines, db_option, emit, fail_cleanly, failures_exit_with, json_option, load, logging_options,
    open_store, progress_for, warn,
)

log = logging.getLogger("inspector")


@click.command()
@click.argument("good_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write the model bundle to.")
@click.option("--pipeline", "-p", default="screw", show_default=True,
              help=f"Pipeline TOML file, or the name of a shipped one ({', '.join(pipeline_names())}).")
@click.option("--epochs", type=click.IntRange(1),
              help="Override the pipeline's number of epochs (fewer also shorten a discriminator's training in "
                   "proportion).")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (split, weights, shuffling).")
@click.option("--force", is_flag=True, help="Overwrite an existing bundle in --out.")
@logging_options()
@json_option
@fail_cleanly
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

    The screw pipelines assume a screw: when most good images tried fail their part checks,
    training stops at once and says so. Any other part: --pipeline general (the frames
    registered to the good images, nothing assumed of the part's shape; `inspector pipelines`).

    \b
    Examples:
      inspector train ../shared/data/mvtec_screw/train/good --out models/screw
      inspector train ../shared/data/mvtec_transistor/train/good --out models/transistor --pipeline general
      inspector train sample_data/train/good --out m --pipeline seed003 --epochs 3
      inspector train good/ --out m --pipeline my_line.toml --seed 7 --json
    """

    from .. import models
    from ..models.pipeline_files import resolve_pipeline
    from ..usecases.training import train_new

    started = time.perf_counter()
    config = resolve_pipeline(pipeline)
    bundle, summary = train_new(good_dir, out, config, seed, epochs, force, progress_for(as_json), warn,
                                announce=_announcer(as_json))
    # Everything `train` did: reading and preprocessing the images, training, calibrating, saving.
    summary["total_seconds"] = round(time.perf_counter() - started, 1)
    fitted = (f"{summary['epochs']}, final loss {summary['final_loss']:.6f}" if summary["final_loss"] is not None
              else models.get(config.model.architecture).no_epochs_summary)
    emit(summary, as_json, "\n".join([
        f"Model saved to {out}",
        f"  pipeline       {summary['pipeline']} ({summary['architecture']})",
        f"  trained on     {summary['trained_on']} images; threshold from {summary['calibrated_on']}",
        *([f"  registration   {summary['registration']}"] if summary.get("registration") else []),
        f"  epochs         {fitted}",
        f"  training time  {summary['total_seconds']:.1f} s in all ({summary['train_seconds']:.1f} s fitting the model)",
        f"  threshold      {summary['threshold']:.6g} ({summary['policy']})",
    ]))


def _announcer(as_json: bool):
    """Where a model fitted without epochs says what it does: stderr on a terminal, else a
    progress line; with --json an INFO line (-v), as quiet as the others' progress."""
    def announce(line: str) -> None:
        if as_json:
            log.info(line)
        elif sys.stderr.isatty():
            click.echo(line, err=True)
        else:
            logging.getLogger(PROGRESS).info("%s", line)

    return announce


@click.command()
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
                   f"[default: {MIN_REVIEWS}].")
@click.option("--force", is_flag=True,
              help="Update even when the reviews look wrong (more than half of the flags dismissed, or the new "
                   "model still flagging parts QA passed); said as warnings.")
@logging_options()
@json_option
@fail_cleanly
def update(model_dir, from_reviews, out, db, good_dir, min_reviews, force, as_json):
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
    QA dismissed fewer than --min-reviews false alarms: too few to trust. Refused too, unless
    --force, when the reviews look wrong: QA dismissed more than half of the parts MODEL_DIR
    flagged, or the new model still flags more than a few (10%, at least one) of the parts QA
    passed, though it was trained on them (real defects labelled ok, say); nothing is saved.

    \b
    Examples:
      inspector update models/screw --from-reviews --out models/screw-v2 --db /srv/line1/inspector.db
      inspector update models/screw --from-reviews --out models/screw-v2 --good-dir /data/screw/train/good --json
      ln -sfn screw-v2 models/current.new && mv -T models/current.new models/current && systemctl reload inspector-watch
    """

    from ..usecases.update import update_from_reviews

    if not from_reviews:
        raise click.ClickException("give --from-reviews: an update learns from QA's reviews")
    result = update_from_reviews(model_dir, out, open_store(db), good_dir, min_reviews or MIN_REVIEWS,
                                 progress_for(as_json), warn, force)

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
    emit(result, as_json, "\n".join(lines))


@click.command()
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
@fail_cleanly
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
    --defect or confirmed reviews, a parameter of another policy, an empty folder, --good and
    --defect sharing an image (the same content under any name: a part cannot be both).

    \b
    Examples:
      inspector calibrate models/screw --good line_good/ --policy mean_std --k 2.5
      inspector calibrate models/screw --good g/ --policy quantile --false-reject-rate 0.02
      inspector calibrate models/screw --good g/ --defect d/ --policy best_f1 --json
      inspector calibrate models/screw --from-reviews --db /srv/line1/inspector.db --dry-run
    """

    from ..usecases.calibrate import calibrate_bundle

    done = calibrate_bundle(model_dir, good, defect, open_store(db) if from_reviews else None, db, policy, plot,
                            dry_run, progress_for(as_json), warn, k=k, factor=factor,
                            false_reject_rate=false_reject_rate, target_recall=target_recall)
    result, bundle = done.result, done.bundle
    good_count, defect_count, before, after = len(result.good), len(result.defect), result.before, result.after
    lines = [
        f"Threshold {result.old:.6g} -> {result.new:.6g} ({result.policy}){' [dry run, not saved]' if dry_run else ''}",
        f"From: {bundle.threshold_info['source']}",
        f"False rejects on good parts: {before.false_positive}/{good_count} -> {after.false_positive}/{good_count}",
    ]
    if defect_count:
        lines += [f"Expected recall on defects: {before.recall:.3f} -> {after.recall:.3f} "
                  f"({after.true_positive}/{defect_count} caught)"] + confusion_lines(after) + [
            f"Precision {after.precision:.3f}  recall {after.recall:.3f}  F1 {after.f1:.3f}"]
    if done.plot is not None:
        lines.append(f"Histogram written to {done.plot}")
    emit(done.to_dict(), as_json, "\n".join(lines))


@click.group("bundle")
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
@fail_cleanly
def bundle_verify(model_dir, accept_edits):
    """Check a bundle as loading it does: bundle.json's fields and checksum, model.keras's
    checksum, the model loads in safe mode. A bundle.json changed by hand is refused everywhere
    until accepted here; a field that is not valid (a threshold of NaN) is never accepted.

    \b
    Examples:
      inspector bundle verify models/screw
      inspector bundle verify models/screw --accept-edits    # after editing bundle.json by hand
    """
    from ..bundle import accept_edits as accept

    if accept_edits:
        accept(model_dir)
    bundle = load(model_dir)
    click.echo(f"{model_dir}: bundle ok ({bundle.pipeline.name}, threshold {bundle.threshold:.6g}, "
               f"model {bundle.fingerprint}){'; edits accepted' if accept_edits else ''}")


@click.command()
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--heatmaps", type=click.Path(file_okay=False, path_type=Path),
              help="Write NAME_heatmap.png (the error map of the upright part), NAME_overlay.jpg (the heat "
                   "drawn on the photo, at most 512 px; 256 px for a part with no hot region, grey when no heat "
                   "shows) and NAME_crop.png (the heat on the upright part) for each image into this folder; "
                   "images of the same name get their folders' names in front (good_000, defect_000).")
@click.option("--batch", type=click.IntRange(1, 1024), default=32, show_default=True, help="Images per model batch.")
@logging_options()
@json_option
@failures_exit_with(2)
@fail_cleanly
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
    from ..usecases.scoring import score_files

    rows = score_files(model_dir, list(paths), heatmaps, batch, progress_for(as_json))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        for row in rows:
            detail = f"error: {row['error']}" if row["verdict"] == "error" else (
                f"score {row['score']:.6g}  threshold {row['threshold']:.6g}")
            click.echo(f"{row['verdict']:7s} {detail}  {row['path']}")
    verdicts = {row["verdict"] for row in rows}
    sys.exit(2 if "error" in verdicts else 1 if "defect" in verdicts else 0)


@click.command()
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--good", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Folder of good test images.")
@click.option("--defect", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Folder of defect test images.")
@click.option("--report", type=click.Path(file_okay=False, path_type=Path),
              help="Write roc.png, histogram.png, scores.csv and metrics.json into this folder.")
@click.option("--exposure-jitter", is_flag=True,
              help="Change every image's lighting at random (gain 0.85-1.15, offset -15..15 grey levels).")
@click.option("--nuisance", type=click.Choice(list(NUISANCE_NAMES)),
              help="Apply a line nuisance to every image first: uneven light (light-radial, light-gradient, "
                   "light-spot), the part moved and turned (position), zoom +-8%, defocus, sensor noise, JPEG "
                   "quality 80-90, a camera of 512 pixels on its longer side (resolution), dust on the background.")
@click.option("--jitter-seed", type=int, default=0, show_default=True,
              help="Seed of the exposure jitter and of the nuisance (with each file's name).")
@click.option("--masks", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of the defect images' ground-truth masks (the same name, or NAME_mask.png): also "
                   "pixel AUROC and AUPRO (up to a false-positive rate of 0.3), in each photo's own pixels.")
@click.option("--kinds", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV of file,kind naming each defect image's kind: recall (and, with --masks, the pixel "
                   "figures) per kind.")
@logging_options()
@json_option
@fail_cleanly
def evaluate(model_dir, good, defect, report, exposure_jitter, nuisance, jitter_seed, masks, kinds, as_json):
    """Measure detection quality on labelled good and defect images.

    Prints image ROC AUC with a 95% bootstrap interval, average precision, and the confusion
    matrix at the bundle's threshold. Images that cannot be judged (unreadable, no part, the
    part not wholly in view) are listed and counted, not scored. With --masks, where the heat
    is: pixel AUROC and AUPRO (MVTec AD's per-region overlap, to a false-positive rate of 0.3),
    the score map drawn back into each photo's pixels (outside the crop: not hot); with
    --report also a picture per image with the mask (green) and the hot regions (magenta).

    \b
    Examples:
      inspector evaluate models/screw --good test/good --defect test/defect --report report/
      inspector evaluate models/screw --good g/ --defect d/ --exposure-jitter --json
      inspector evaluate models/screw --good g/ --defect d/ --nuisance light-radial
      inspector evaluate models/screw --good g/ --defect d/ --masks masks/ --kinds kinds.csv
    """

    from ..usecases.evaluation import evaluate_folders

    data = evaluate_folders(model_dir, good, defect, report, exposure_jitter, nuisance, jitter_seed,
                            progress_for(as_json), warn, masks, kinds)
    stats, (low, high), unjudged = _confusion(data["confusion"]), data["auroc_ci95"], data["unjudged"]
    lines = [
        f"{data['pipeline']}: {data['good']} good, {data['defect']} defect images"
        + (" (exposure jitter)" if exposure_jitter else f" (nuisance: {nuisance})" if nuisance else "")
        + (f"; {len(unjudged)} could not be judged" if unjudged else ""),
        f"AUROC {data['auroc']:.3f} (95% bootstrap interval {low:.3f}-{high:.3f})",
        f"Average precision {data['average_precision']:.3f}",
        f"At threshold {data['threshold']:.6g}:",
        *confusion_lines(stats),
        f"Recall {stats.recall:.3f}  precision {stats.precision:.3f}  "
        f"false rejects {stats.false_positive}/{data['good']}",
    ]
    if masks is not None:
        inside, alone = data["in_crop"], data["crop_alone"]
        lines.append(f"Pixel AUROC {data['pixel_auroc']:.3f}  AUPRO (FPR <= 0.3) {data['aupro']:.3f}  "
                     f"({data['regions']} defect regions)")
        lines.append(f"  false positives counted in the crop only: pixel AUROC {inside['pixel_auroc']:.3f}  "
                     f"AUPRO {inside['aupro']:.3f}; the crop alone, no model: {alone['pixel_auroc']:.3f} / "
                     f"{alone['aupro']:.3f}")
    for kind, k in data.get("kinds", {}).items():
        lines.append(f"  {kind}: found {k['found']} of {k['defects']}"
                     + (f"; pixel AUROC {k['pixel_auroc']:.3f}, AUPRO {k['aupro']:.3f}" if k.get("aupro") is not None
                        else ""))
    if report is not None:
        lines.append(f"Report written to {report}")
    emit(data, as_json, "\n".join(lines))


def _confusion(counts: dict):
    from ..calibration import Confusion

    return Confusion(**{key: counts[key] for key in ("true_positive", "false_positive", "true_negative",
                                                     "false_negative")})


@click.command("pipelines")
@logging_options()
@json_option
@fail_cleanly
def pipelines(as_json):
    """List the shipped pipelines, one line each on what it assumes of the part.

    A new part starts with `--pipeline general`; the others assume a screw.

    \b
    Example:
      inspector pipelines
      inspector train good/ --out models/part --pipeline general
    """
    from ..models.pipeline_files import resolve_pipeline

    rows = []
    for name in pipeline_names():
        pipeline = resolve_pipeline(name)
        rows.append({"name": name, "default": name == "screw", "assumes": pipeline.preprocess.assumes,
                     "architecture": pipeline.model.architecture, "description": pipeline.description})
    labels = [row["name"] + (" (default)" if row["default"] else "") for row in rows]
    width = max(map(len, labels))
    emit(rows, as_json, "\n".join(f"{label:<{width}}  assumes {row['assumes']}; {row['architecture']}"
                                  for label, row in zip(labels, rows)))


COMMANDS = (train, update, calibrate, bundle_group, score, evaluate, pipelines)
