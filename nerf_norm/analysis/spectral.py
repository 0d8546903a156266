"""Frequency-resolved training error (the paper's Fig. 3): how fast each frequency band of a signal is learned.

A signal sampled on a regular periodic grid (1D or 2D) is fitted full batch by the shared
:class:`~nerf_norm.tasks.base.Trainer`. Every ``k`` iterations the residual ``pred - target`` is Fourier
transformed and, for each band of frequency magnitudes, its energy is compared to the target's:

    error_b = || F(pred - target) restricted to band b || / || F(target) restricted to band b ||

so 1 means nothing of that band is learned yet and 0 means it is reproduced exactly. Frequencies are in
cycles per domain (the grid covers one period); the magnitude of a 2D frequency ``(k_y, k_x)`` is
``sqrt(k_y^2 + k_x^2)``. A band where the target has no energy has an undefined error (NaN).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from ..errors import UserError
from ..networks import build_network, get_method
from ..tasks.base import Task, TrainConfig, Trainer

__all__ = [
    "periodic_grid",
    "frequency_magnitude",
    "band_edges",
    "band_errors",
    "tones_signal",
    "two_tone_signal",
    "SignalTask",
    "SpectralDynamics",
    "spectral_dynamics",
]


def periodic_grid(shape: Sequence[int]) -> Tensor:
    """Coordinates of a periodic grid over ``[-1, 1)^D`` (endpoint excluded), row-major, ``[prod(shape), D]``."""
    axes = [-1.0 + 2.0 * torch.arange(n, dtype=torch.float32) / n for n in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(shape))


def frequency_magnitude(shape: Sequence[int]) -> Tensor:
    """``|k|`` in cycles per domain for every bin of ``torch.fft.fftn`` over ``shape``, same shape."""
    ks = [torch.fft.fftfreq(n, d=1.0 / n) for n in shape]
    grids = torch.meshgrid(*ks, indexing="ij")
    return torch.sqrt(sum(g * g for g in grids))


def band_edges(shape: Sequence[int], num_bands: int, max_frequency: Optional[float] = None) -> Tensor:
    """``num_bands + 1`` equally spaced edges over ``[0, max_frequency]`` (default: the largest ``|k|``)."""
    if num_bands < 1:
        raise ValueError(f"band_edges: num_bands must be at least 1, got {num_bands}")
    top = float(frequency_magnitude(shape).max()) if max_frequency is None else float(max_frequency)
    return torch.linspace(0.0, top, num_bands + 1)


def _band_index(shape: Sequence[int], edges: Tensor) -> Tensor:
    """Band of every frequency bin: band b holds ``edges[b] < |k| <= edges[b+1]`` (band 0 also ``|k| = 0``);
    bins above the last edge get -1."""
    mag = frequency_magnitude(shape)
    idx = torch.bucketize(mag, edges.to(mag.dtype), right=False) - 1
    idx[mag == 0] = 0
    idx[mag > edges[-1]] = -1
    return idx


def band_errors(pred: Tensor, target: Tensor, edges: Tensor) -> Tensor:
    """Relative error per frequency band, ``[num_bands]`` (NaN where the target has no energy in the band).

    Args:
        pred, target: ``[*grid, C]`` samples on a periodic grid, channels last (their energies are summed).
        edges: ``[num_bands + 1]`` band edges in cycles per domain (:func:`band_edges`).
    """
    if pred.shape != target.shape or target.dim() < 2:
        raise ValueError(
            f"band_errors: expected pred and target of one shape [*grid, C], got {tuple(pred.shape)} "
            f"and {tuple(target.shape)}"
        )
    grid = target.shape[:-1]
    dims = tuple(range(len(grid)))
    res = torch.fft.fftn((pred - target).double(), dim=dims).abs().square().sum(-1)  # [*grid]
    ref = torch.fft.fftn(target.double(), dim=dims).abs().square().sum(-1)
    idx = _band_index(grid, edges).reshape(-1)
    keep = idx >= 0
    num_bands = edges.numel() - 1
    res_b = torch.zeros(num_bands, dtype=torch.float64).index_add_(0, idx[keep], res.reshape(-1)[keep])
    ref_b = torch.zeros(num_bands, dtype=torch.float64).index_add_(0, idx[keep], ref.reshape(-1)[keep])
    out = torch.sqrt(res_b / ref_b)
    out[ref_b <= 1e-12 * ref_b.sum().clamp_min(1e-300)] = math.nan
    return out


def tones_signal(
    num_samples: int, frequencies: Sequence[float], amplitudes: Optional[Sequence[float]] = None, seed: int = 0
) -> Tensor:
    """``sum_j a_j sin(pi k_j (x + 1) + phi_j)`` on the periodic grid of ``num_samples`` points, ``[T, 1]``.

    ``k_j`` are frequencies in cycles per domain (integers fall exactly on DFT bins); the phases ``phi_j`` are
    drawn uniformly from ``seed``; amplitudes default to 1.
    """
    if num_samples < 4:
        raise ValueError(f"tones_signal: need at least 4 samples, got {num_samples}")
    nyquist = num_samples / 2
    if any(not 0 < f < nyquist for f in frequencies):
        raise ValueError(
            f"tones_signal: frequencies must lie in (0, {nyquist}) for {num_samples} samples, got {list(frequencies)}"
        )
    amps = [1.0] * len(frequencies) if amplitudes is None else list(amplitudes)
    gen = torch.Generator().manual_seed(seed)
    phases = 2 * math.pi * torch.rand(len(frequencies), generator=gen, dtype=torch.float64)
    x = periodic_grid([num_samples]).double()[:, 0]
    y = sum(a * torch.sin(math.pi * f * (x + 1.0) + p) for a, f, p in zip(amps, frequencies, phases))
    return y.float().unsqueeze(-1)


def two_tone_signal(num_samples: int = 256, low: float = 2.0, high: float = 40.0) -> Tensor:
    """Two unit sines, ``low`` and ``high`` cycles per domain, ``[T, 1]``."""
    return tones_signal(num_samples, (low, high))


class SignalTask(Task):
    """Fit samples of a signal on a periodic grid: ``[T, D]`` coordinates -> ``[T, C]`` values, MSE.

    Records the relative error per frequency band (:func:`band_errors`) at every logged iteration, as
    ``history["band_error"]`` (``[bands]`` per entry).
    """

    name = "signal"
    progress_metric = "psnr"

    def __init__(self, target: Tensor, grid_shape: Sequence[int], edges: Tensor, description: str = "signal") -> None:
        grid_shape = tuple(int(n) for n in grid_shape)
        if len(grid_shape) not in (1, 2):
            raise UserError(f"signal grid must be 1D or 2D, got shape {grid_shape}")
        if target.dim() != 2 or target.shape[0] != math.prod(grid_shape):
            raise UserError(
                f"signal values must be [T, C] with T = {math.prod(grid_shape)} samples of the grid "
                f"{grid_shape}, got {tuple(target.shape)}"
            )
        self.grid_shape = grid_shape
        self.target = target.float()
        self.edges = edges
        self.description = description
        self._coords = periodic_grid(grid_shape)
        self._range = float(self.target.max() - self.target.min()) or 1.0

    @property
    def in_dim(self) -> int:
        return len(self.grid_shape)

    @property
    def out_dim(self) -> int:
        return self.target.shape[1]

    def coords(self) -> Tensor:
        return self._coords

    def loss(self, pred: Tensor, index: Optional[Tensor] = None) -> Tensor:
        return torch.mean((pred - self.target) ** 2)

    def progress(self, pred: Tensor, index: Optional[Tensor] = None) -> float:
        mse = float(torch.mean((pred - self.target) ** 2))
        return math.inf if mse == 0 else 10 * math.log10(self._range**2 / mse)

    def band_error(self, pred: Tensor) -> Tensor:
        shape = (*self.grid_shape, self.out_dim)
        return band_errors(pred.reshape(shape), self.target.reshape(shape), self.edges)

    def record(self, pred: Tensor) -> Dict[str, object]:
        return {"band_error": self.band_error(pred).tolist()}

    def evaluate(self, pred: Tensor) -> Dict[str, float]:
        errs = self.band_error(pred)
        return {"psnr": self.progress(pred), **{f"band_error_{b}": float(e) for b, e in enumerate(errs)}}

    def describe(self) -> Dict[str, object]:
        return {
            "task": self.name,
            "signal": self.description,
            "grid": list(self.grid_shape),
            "band_edges": [round(float(e), 6) for e in self.edges],
        }

    def save_outputs(self, pred: Tensor, out_dir: Path) -> Dict[str, Path]:
        from ..plotting import pyplot

        plt = pyplot()

        path = Path(out_dir) / "fit.png"
        if len(self.grid_shape) == 1:
            fig, ax = plt.subplots(figsize=(8, 3))
            x = self._coords[:, 0].numpy()
            ax.plot(x, self.target[:, 0].numpy(), lw=1.2, label="target")
            ax.plot(x, pred[:, 0].numpy(), lw=1.0, label="network", alpha=0.85)
            ax.set_xlabel("x")
            ax.set_ylabel("value")
            ax.legend(loc="upper right")
        else:
            fig, axes = plt.subplots(1, 2, figsize=(7, 3.5))
            h, w = self.grid_shape
            for ax, img, title in ((axes[0], self.target, "target"), (axes[1], pred, "network")):
                ax.imshow(img[:, 0].reshape(h, w).numpy(), cmap="gray")
                ax.set_title(title)
                ax.axis("off")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return {"fit": path}


@dataclass
class SpectralDynamics:
    """Band errors of one training run: ``errors[i, b]`` at ``iterations[i]`` for the band
    ``(edges[b], edges[b + 1]]`` (cycles per domain)."""

    method: str
    iterations: np.ndarray
    errors: np.ndarray
    edges: np.ndarray
    metrics: Dict[str, float]

    def as_dict(self) -> Dict[str, object]:
        return {
            "method": self.method,
            "iterations": self.iterations.tolist(),
            "errors": [[None if math.isnan(v) else v for v in row] for row in self.errors.tolist()],
            "band_edges": self.edges.tolist(),
            "metrics": self.metrics,
        }


def spectral_dynamics(
    method: str,
    task: SignalTask,
    arch: str,
    iters: int,
    every: int,
    out_dir: Path,
    *,
    seed: int = 0,
    lr: Optional[float] = None,
    quiet: bool = True,
    resume: bool = True,
    overwrite: bool = False,
) -> SpectralDynamics:
    """Trains ``method`` (a registry name, e.g. ``pe+cn``) with ``arch`` on ``task`` for ``iters`` iterations,
    recording the band errors every ``every`` iterations (and at iteration 1). Outputs go to ``out_dir``.

    The learning rate defaults to the paper's for the method (1e-2 with a norm, 2e-4 without).
    """
    spec = get_method(method)
    config = TrainConfig(
        iters=iters,
        lr=lr,
        seed=seed,
        log_every=every,
        checkpoint_every=max(iters, 1),
        resume=resume,
        quiet=quiet,
        overwrite=overwrite,
    )
    trainer = Trainer(config, out_dir, {"method": spec.name, "arch": arch})
    result = trainer.fit(
        task, lambda: build_network(spec.name, task.in_dim, task.out_dim, arch, seed=seed), spec.default_lr
    )
    errors = np.asarray(result.history["band_error"], dtype=np.float64)
    return SpectralDynamics(
        spec.name,
        np.asarray(result.history["iteration"]),
        errors,
        task.edges.numpy(),
        {k: v for k, v in result.metrics.items() if isinstance(v, (int, float))},
    )


def default_bands(num_samples: int, num_bands: int) -> Tuple[Tensor, List[float]]:
    """Edges of ``num_bands`` equal bands over ``[0, num_samples / 4]`` and one tone at each band's centre
    (the default 1D signal of ``nerf-norm spectral-dynamics``)."""
    top = num_samples / 4
    edges = torch.linspace(0.0, top, num_bands + 1)
    centres = [float(0.5 * (edges[b] + edges[b + 1])) for b in range(num_bands)]
    return edges, centres
