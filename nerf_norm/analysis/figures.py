"""Figures of the spectral-bias analysis, laid out like the paper's Fig. 1a and Fig. 3."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Mapping, Sequence

import numpy as np

from ..plotting import pyplot
from .spectral import SpectralDynamics

NORM_COLOURS = {"none": "#d62728", "bn": "#1f77b4", "ln": "#2ca02c", "gn": "#9467bd", "cn": "#ff7f0e"}
NORM_LABELS = {"none": "no norm", "bn": "BN", "ln": "LN", "gn": "GN", "cn": "CN"}


def plot_ntk_histograms(
    eigenvalues: Mapping[str, Mapping[str, np.ndarray]], titles: Mapping[str, str], path: Path, bins: int = 60
) -> Path:
    """One row per encoding, the norms' histograms of log10 eigenvalues overlaid (paper Fig. 1a).

    ``eigenvalues[encoding][norm]`` holds the eigenvalues; non-positive ones (rounding) are left out.
    """
    plt = pyplot()
    encodings = list(eigenvalues)
    logs = {e: {n: np.log10(v[v > 0]) for n, v in eigenvalues[e].items()} for e in encodings}
    every = np.concatenate([x for per in logs.values() for x in per.values()])
    lo, hi = np.floor(every.min()), np.ceil(every.max())
    edges = np.linspace(lo, hi, bins + 1)
    fig, axes = plt.subplots(len(encodings), 1, figsize=(7.5, 2.4 * len(encodings)), sharex=True, squeeze=False)
    for ax, enc in zip(axes[:, 0], encodings):
        for norm, values in logs[enc].items():
            weights = np.full(values.shape, 1.0 / max(len(eigenvalues[enc][norm]), 1))
            ax.hist(
                values,
                bins=edges,
                weights=weights,
                histtype="stepfilled",
                alpha=0.25,
                color=NORM_COLOURS.get(norm),
                edgecolor=NORM_COLOURS.get(norm),
                linewidth=1.2,
                label=f"{NORM_LABELS.get(norm, norm)} (median 10^{np.median(values):.1f})",
            )
        ax.set_title(titles.get(enc, enc), fontsize=10)
        ax.set_ylabel("fraction of\neigenvalues")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", ncol=1)
    axes[-1, 0].set_xlabel("log10(NTK eigenvalue)")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def plot_spectral_dynamics(runs: Sequence[SpectralDynamics], path: Path, title: str = "") -> Path:
    """Heatmaps of relative error per frequency band over iterations, one per method (paper Fig. 3).

    x: training iteration, y: frequency band (cycles per domain), colour: relative error (darker = larger,
    clipped at 1; blank where a band has no target energy).
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, len(runs), figsize=(3.2 * len(runs) + 1.0, 3.2), sharey=True, squeeze=False)
    image = None
    for ax, run in zip(axes[0], runs):
        err = np.ma.masked_invalid(run.errors.T)  # [bands, logged iterations]
        extent = (run.iterations[0], run.iterations[-1], run.edges[0], run.edges[-1])
        image = ax.imshow(
            err,
            origin="lower",
            aspect="auto",
            extent=extent,
            cmap="magma_r",
            vmin=0.0,
            vmax=1.0,
            interpolation="nearest",
        )
        ax.set_title(run.method)
        ax.set_xlabel("iteration")
    axes[0, 0].set_ylabel("frequency (cycles per domain)")
    cbar = fig.colorbar(image, ax=list(axes[0]), fraction=0.025, pad=0.02, extend="max")
    cbar.set_label("relative error")
    if title:
        fig.suptitle(title, fontsize=10, y=1.03)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return path


def stats_table(stats: Mapping[str, Mapping[str, Dict[str, float]]], keys: Sequence[str]) -> str:
    """Markdown table: one row per (encoding, norm), the given statistics as columns."""
    head = "| encoding | norm | " + " | ".join(keys) + " |"
    rule = "|---|---|" + "---|" * len(keys)
    rows = [head, rule]
    for enc, per_norm in stats.items():
        for norm, values in per_norm.items():
            rows.append(f"| {enc} | {norm} | " + " | ".join(f"{values[k]:.3g}" for k in keys) + " |")
    return "\n".join(rows)
