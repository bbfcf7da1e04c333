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
