"""Equal wall-clock comparison of nerfstudio methods in one process (the main job, ``nerf-norm demo``).

Each method trains with nerfstudio's ``Trainer`` (the ``-lite`` CPU preset, rays and samples overridden) for a
fixed training time; every ``eval_every`` seconds of training its test-split PSNR on a few views is measured
(the clock is stopped meanwhile). The figure shows ground truth | each method's final render per view, with its
PSNR, and the PSNR-over-time curves.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from ..plotting import pyplot
from .experiment import RunSettings, configure, evaluate, lite_config, setup_trainer, train_step


@dataclass
class CompareSettings:
    data: Path
    out: Path
    seconds: float
    eval_every: float
    rays: int
    samples: int
    seed: int
    views: Tuple[int, ...]

    def describe(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


@dataclass
class MethodResult:
    steps: int = 0
    psnr: float = float("nan")
    ssim: float = float("nan")
    view_psnr: List[float] = field(default_factory=list)
    curve: List[Tuple[float, int, float]] = field(default_factory=list)
    """(training seconds, steps, mean PSNR over the views)"""
    ground_truth: List[np.ndarray] = field(default_factory=list)
    renders: List[np.ndarray] = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "steps": self.steps,
            "psnr": self.psnr,
            "ssim": self.ssim,
            "view_psnr": self.view_psnr,
            "curve": [{"seconds": s, "steps": k, "psnr": p} for s, k, p in self.curve],
        }


def _evaluate(trainer, views: Sequence[int], keep_images: bool, result: MethodResult) -> Tuple[float, float]:
    """Mean PSNR and SSIM over ``views`` of the test split (:func:`experiment.evaluate` per view); with
    ``keep_images`` the ground truth and the final render of each view are stored in ``result`` (taken from
    nerfstudio's own ``img``: gt | ... | render)."""
    psnrs, ssims, renders = [], [], {}
    for index in views:
        metrics = evaluate(trainer, indices=[index], renders=renders if keep_images else None)
        psnrs.append(metrics["psnr"])
        ssims.append(metrics.get("fine_ssim", metrics.get("ssim", float("nan"))))  # mipnerf: fine_ssim
    if keep_images:
        widths = trainer.pipeline.datamanager.eval_dataset.cameras.width
        for index in views:
            width = int(widths[index])
            result.ground_truth.append(renders[index][:, :width])
            result.renders.append(renders[index][:, -width:])
        result.view_psnr = psnrs
    return float(np.mean(psnrs)), float(np.mean(ssims))


def train_for(name: str, settings: CompareSettings, progress: Progress) -> MethodResult:
    """Trains ``name`` (its ``-lite`` preset) for ``settings.seconds`` of training time."""
    config = lite_config(name)
    config.pipeline.datamanager.train_num_rays_per_batch = settings.rays
    config.pipeline.model.num_coarse_samples = settings.samples
    config.pipeline.model.num_importance_samples = settings.samples
    config = configure(config, RunSettings(settings.data, settings.out / name, steps=10**9, seed=settings.seed))
    trainer = setup_trainer(config)
    result = MethodResult()
    bar = progress.add_task(name, total=settings.seconds, psnr="")
    elapsed, next_eval = 0.0, 0.0
    while elapsed < settings.seconds:
        if elapsed >= next_eval:
            psnr, _ = _evaluate(trainer, settings.views, False, result)
            result.curve.append((elapsed, result.steps, psnr))
            progress.update(bar, psnr=f"test PSNR {psnr:.2f}")
            next_eval += settings.eval_every
        start = time.perf_counter()
        train_step(trainer, result.steps)
        result.steps += 1
        elapsed += time.perf_counter() - start
        progress.update(bar, completed=min(elapsed, settings.seconds))
    result.psnr, result.ssim = _evaluate(trainer, settings.views, True, result)
    result.curve.append((elapsed, result.steps, result.psnr))
    progress.update(bar, psnr=f"test PSNR {result.psnr:.2f}")
    trainer.save_checkpoint(result.steps - 1)
    return result


def compare(names: Sequence[str], settings: CompareSettings) -> Dict[str, MethodResult]:
    progress = Progress(
        TextColumn("[bold]{task.description:12s}"), BarColumn(), TextColumn("{task.fields[psnr]}"), TimeElapsedColumn()
    )
    with progress:
        return {name: train_for(name, settings, progress) for name in names}


def write_figure(results: Dict[str, MethodResult], path: Path, settings: CompareSettings) -> Path:
    """Rows: the test views; columns: ground truth, each method (PSNR in the title); right: PSNR over time."""
    plt = pyplot()
    names = list(results)
    rows = len(settings.views)
    fig = plt.figure(figsize=(2.3 * (len(names) + 1) + 4.2, 2.4 * rows))
    grid = fig.add_gridspec(rows, len(names) + 2, width_ratios=[1] * (len(names) + 1) + [1.9])
    for r, view in enumerate(settings.views):
        panels = [("ground truth", results[names[0]].ground_truth[r])]
        panels += [(f"{n}  {results[n].view_psnr[r]:.2f} dB", results[n].renders[r]) for n in names]
        for c, (title, image) in enumerate(panels):
            ax = fig.add_subplot(grid[r, c])
            ax.imshow(image)
            ax.set_title(title, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(f"test view {view}", fontsize=9)
    ax = fig.add_subplot(grid[:, -1])
    for n in names:
        seconds, _, psnr = zip(*results[n].curve)
        ax.plot(seconds, psnr, marker="o", label=f"{n} ({results[n].steps} steps)")
    ax.set_xlabel("training time (s)")
    ax.set_ylabel(f"test PSNR (dB), views {list(settings.views)}")
    ax.set_title(f"equal wall-clock: {settings.seconds:.0f} s each", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path
