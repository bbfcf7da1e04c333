"""PNG charts for calibration and evaluation (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def score_histogram(path, good: np.ndarray, defect: np.ndarray | None, threshold: float, title: str,
                    labels: tuple[str, str] = ("good", "defect")):
    """Histogram of two groups of scores with the threshold line; `path` may be a file object."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    values = np.concatenate([good, defect if defect is not None else [], [threshold]])
    bins = np.linspace(values.min(), values.max() + 1e-12, 40)
    if len(good):
        ax.hist(good, bins=bins, alpha=0.6, label=f"{labels[0]} ({len(good)})", color="tab:green")
    if defect is not None and len(defect):
        ax.hist(defect, bins=bins, alpha=0.6, label=f"{labels[1]} ({len(defect)})", color="tab:red")
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.4g}")
    ax.set_xlabel("anomaly score")
    ax.set_ylabel("images")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def roc_plot(path: Path, fpr: np.ndarray, tpr: np.ndarray, auc: float, title: str) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    ax.plot(fpr, tpr, color="tab:blue", label=f"AUROC {auc:.3f}")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set_xlabel("false-reject rate (good parts flagged)")
    ax.set_ylabel("recall (defects caught)")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


MIN_SPAN_S = 3600.0  # the scores-over-time axis spans at least an hour


def time_axis(times: list):
    """The time axis of `score_timeline` for `times` (oldest first): at least an hour around
    them, or their whole span with a little margin when longer. A batch scored within a second
    would otherwise leave matplotlib to widen the axis to years, with every point on one line
    and the threshold and band drawn zero wide."""
    from datetime import timedelta

    first, last = times[0], times[-1]
    span = (last - first).total_seconds()
    if span < MIN_SPAN_S:
        middle = first + (last - first) / 2
        return middle - timedelta(seconds=MIN_SPAN_S / 2), middle + timedelta(seconds=MIN_SPAN_S / 2)
    margin = timedelta(seconds=0.02 * span)
    return first - margin, last + margin


def score_timeline(path, times: list, scores: np.ndarray, flagged: np.ndarray, thresholds: np.ndarray,
                   models: list, bands: dict, window: int, title: str):
    """Scores over time (oldest first): passed parts green, flagged red; the threshold in force
    (a step line); per model (`models`: each score's model) its calibration band (p5-p95 of its
    good scores, `bands`: model -> (low, high)) over the time it judged, and the median of its
    last `window` passed scores, as the drift monitor sees them. The axis is `time_axis`: the
    first threshold and band reach back to its start, the last ones on to its end. `path` may
    be a file object."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4), dpi=100)
    scores, flagged = np.asarray(scores, float), np.asarray(flagged, bool)
    if len(scores):
        start, end = time_axis(times)
        ax.step([start, *times, end], [thresholds[0], *thresholds, thresholds[-1]], where="post", color="black",
                linestyle="--", linewidth=1, label="threshold")
        for i, model in enumerate(dict.fromkeys(models)):
            mine = [t for t, m in zip(times, models) if m == model]
            if model in bands:
                ax.fill_between([start if mine[0] == times[0] else mine[0], end if mine[-1] == times[-1] else mine[-1]],
                                *bands[model], color="tab:blue", alpha=0.15, linewidth=0,
                                label="calibration p5-p95" if not i else None)
            passed = [(t, s) for t, s, f, m in zip(times, scores, flagged, models) if m == model and not f]
            if len(passed) >= window > 0:
                values = np.array([s for _, s in passed])
                medians = [np.median(values[j - window + 1:j + 1]) for j in range(window - 1, len(values))]
                ax.plot([t for t, _ in passed[window - 1:]], medians, color="tab:orange", linewidth=1.5,
                        label=f"median of the last {window} passed" if not i else None)
        ax.scatter([t for t, f in zip(times, flagged) if not f], scores[~flagged], s=9, color="tab:green",
                   label=f"passed ({int((~flagged).sum())})")
        ax.scatter([t for t, f in zip(times, flagged) if f], scores[flagged], s=12, color="tab:red",
                   label=f"flagged ({int(flagged.sum())})")
        ax.set_xlim(start, end)
        ax.legend(fontsize="small", loc="upper left")
    else:
        ax.text(0.5, 0.5, "no scored parts", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylabel("anomaly score")
    ax.set_title(title)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def pareto_chart(path, names: list[str], counts: list[int], title: str):
    """A Pareto chart: a bar per name (most frequent first, as given) and the cumulative share
    as a line on a right-hand axis in percent. `path` may be a file object."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(names) + 2), 3.5), dpi=100)
    if len(counts):
        positions = np.arange(len(names))
        ax.bar(positions, counts, color="tab:red", alpha=0.75)
        ax.set_xticks(positions, [name if len(name) <= 18 else name[:17] + "…" for name in names],
                      rotation=20 if len(names) > 4 else 0, ha="right" if len(names) > 4 else "center")
        for label in ax.get_xticklabels():  # a kind is anyone's text: "$...$" is not mathematics here
            label.set_parse_math(False)
        ax.set_ylabel("confirmed defects")
        ax.yaxis.get_major_locator().set_params(integer=True)
        cumulative = ax.twinx()
        cumulative.plot(positions, 100 * np.cumsum(counts) / np.sum(counts), color="black", marker="o", linewidth=1.5)
        cumulative.set_ylim(0, 105)
        cumulative.set_ylabel("cumulative %")
    else:
        ax.text(0.5, 0.5, "no confirmed defects", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title).set_parse_math(False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
