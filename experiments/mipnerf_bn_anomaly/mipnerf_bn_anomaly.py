"""Why did mipnerf-bn score 9.8 dB on lego (benchmarks/results/mipnerf_lego.md)? A diagnosis run.

Trains ``--method`` (default mipnerf-bn) exactly as ``mipnerf_blender.py`` did (lite settings, lego at 100x100,
600 steps, seed 0), logging the training-batch PSNR of the fine pass, then scores the same test views three ways:

* ``running``: eval mode, the norms use their running statistics (what ``ns-eval`` and the benchmark measured);
* ``batch``: the norms use the batch statistics of each 4096-ray render chunk (train-mode norms, no gradient,
  running statistics untouched);
* ``recalibrated``: eval mode after the running statistics were re-estimated, weights frozen, as the plain
  average over ``--recalibrate`` training batches (momentum None) instead of the exponential average that lags
  behind the changing weights.

If training PSNR is high and ``running`` is far below ``batch``/``recalibrated``, the weights are fine and the
running statistics are the problem. Results: ``experiments/mipnerf_bn_anomaly/mipnerf_bn_anomaly.{json,md}``.

    .venv/bin/python experiments/mipnerf_bn_anomaly/mipnerf_bn_anomaly.py
"""

from __future__ import annotations

import copy
import functools
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import tyro
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))  # the benchmarks' helpers
from task_tables import provenance, resume_keyed  # noqa: E402

from nerf_norm.nerfstudio.experiment import RunSettings, configure, evaluate, lite_config, setup_trainer, train_step
from nerf_norm.nerfstudio.statistics import refresh_running_statistics
from nerf_norm.norms import BatchNorm, CrossNorm, GlobalNorm

HERE = Path(__file__).resolve().parent  # this experiment's folder: its results
BENCHMARKS = HERE.parents[1] / "benchmarks"
DATA = Path(os.environ.get("NERF_NORM_DATA", HERE.parents[2] / "shared" / "data")) / "blender" / "lego"
console = Console()
STAT_NORMS = (BatchNorm, GlobalNorm, CrossNorm)


@dataclass
class Args:
    methods: tuple[str, ...] = ("mipnerf-bn", "mipnerf-cn")
    data: Path = DATA
    scale: float = 0.25
    steps: int = 600
    log_every: int = 50
    views: tuple[int, ...] = (0, 1, 2, 3)
    recalibrate: int = 50
    """training batches (no gradient) for the recalibrated running statistics"""
    momentum: float = 0.1
    """norm momentum of the running statistics while training (the methods' default is 0.1)"""
    threads: int = 1
    seed: int = 0
    out: Path = HERE / "mipnerf_bn_anomaly"
    scratch: Path = BENCHMARKS / "scratch" / "mipnerf_bn_anomaly"


def _stat_norms(model):
    return [m for m in model.modules() if isinstance(m, STAT_NORMS) and m.track_running_stats]


def _train(trainer, step: int) -> float:
    """One training step (``experiment.train_step``); returns the fine pass's training PSNR on the batch."""
    losses: dict = {}
    train_step(trainer, step, losses)
    return -10 * math.log10(losses["rgb_loss_fine"])


def _evaluate_batch_stats(trainer, views) -> dict:
    """Scores with every norm on batch statistics of its render chunk, on a copy of the model."""
    pipeline = trainer.pipeline
    model = pipeline.model
    saved = copy.deepcopy(model.state_dict())
    norms = _stat_norms(model)  # listed once: the filter is on track_running_stats, which is switched off below
    for norm in norms:
        norm.track_running_stats = False  # training=False with no running stats -> batch statistics
    try:
        return evaluate(trainer, indices=views)
    finally:
        for norm in norms:
            norm.track_running_stats = True
        model.load_state_dict(saved)


def _train_rays_psnr(trainer, batches: int, step: int) -> dict:
    """Fine-pass PSNR on ``batches`` training ray batches, the same rays rendered with the norms on the batch's
    statistics (as in training) and on the running statistics (as in eval): separates a train/test gap of the
    normalization from one of generalization to new views."""
    pipeline = trainer.pipeline
    model = pipeline.model
    saved = copy.deepcopy(model.state_dict())
    sums = {"train_mode": 0.0, "eval_mode": 0.0}
    with torch.no_grad():
        for k in range(batches):
            ray_bundle, batch = pipeline.datamanager.next_train(step + k)
            for key, training in (("train_mode", True), ("eval_mode", False)):
                model.train(training)
                for norm in _stat_norms(model):
                    norm.momentum = 0.0  # no running-statistics update while measuring
                # a fresh bundle per mode: the model's collider fills in nears/fars only where they are unset, and
                # sets the near plane to 0 outside training (nerfstudio's default); before 2026-11-24 the eval
                # pass reused the bundle the train pass had given near plane 2 (see the errata in the results)
                bundle = copy.copy(ray_bundle)
                bundle.nears = bundle.fars = None
                outputs = model(bundle)
                loss = model.get_loss_dict(outputs, batch)["rgb_loss_fine"]
                sums[key] += -10 * math.log10(float(loss))
    model.load_state_dict(saved)
    for norm in _stat_norms(model):
        norm.momentum = 0.1
    model.train()
    return {k: v / batches for k, v in sums.items()}


def run(args: Args, method: str) -> dict:
    config = lite_config(method)
    if hasattr(config.pipeline.model, "norm_momentum"):
        config.pipeline.model.norm_momentum = args.momentum
    config = configure(
        config, RunSettings(args.data, args.scratch / method, args.steps, args.seed, image_scale=args.scale)
    )
    trainer = setup_trainer(config)
    curve = []
    start = time.perf_counter()
    for step in range(args.steps):
        psnr = _train(trainer, step)
        if (step + 1) % args.log_every == 0:
            curve.append({"step": step + 1, "train_psnr": psnr, "seconds": time.perf_counter() - start})
            console.print(f"{method} step {step + 1}: training-batch PSNR {psnr:.2f}")
    result = {"curve": curve, "train_rays": _train_rays_psnr(trainer, 20, args.steps)}
    console.print(f"{method} on 20 training batches: {result['train_rays']}")
    result["running"] = evaluate(trainer, indices=args.views)
    console.print(f"{method} running statistics: {result['running']['psnr']:.2f} dB")
    result["batch"] = _evaluate_batch_stats(trainer, args.views)
    console.print(f"{method} batch statistics: {result['batch']['psnr']:.2f} dB")
    # the plain mean over fresh training batches at the final weights, as nerf-norm extract-mesh --refresh-stats
    refreshed = refresh_running_statistics(trainer.pipeline, args.recalibrate, start_step=args.steps)
    assert refreshed, "no norm with running statistics found"
    result["recalibrated"] = evaluate(trainer, indices=args.views)
    console.print(f"{method} recalibrated running statistics: {result['recalibrated']['psnr']:.2f} dB")
    return result


def main(args: Args) -> None:
    torch.set_num_threads(args.threads)
    meta = provenance(
        "mipnerf_bn_anomaly",
        args.threads,
        f"lego at scale {args.scale}, lite settings, {args.steps} steps, seed {args.seed}, norm momentum "
        f"{args.momentum}, test views {list(args.views)}, recalibration over {args.recalibrate} batches",
    )
    record = resume_keyed(
        args.out, meta, {f"{m}@momentum={args.momentum}": functools.partial(run, args, m) for m in args.methods}
    )
    lines = [
        "# mipnerf-bn on lego: where the 9.8 dB came from",
        "",
        f"- command: `{record['meta']['command']}`",
        f"- machine: {record['meta']['machine']}",
        f"- setting: {record['meta']['setting']}",
        f"- date: {record['meta']['date']}",
        *([f"- errata: {record['meta']['errata']}"] if record["meta"].get("errata") else []),
        "",
        "| run | training-batch PSNR (last step) | 20 training batches, batch stats / running stats | "
        "test PSNR, running stats | test PSNR, batch stats | test PSNR, recalibrated | "
        "SSIM running / batch / recalibrated |",
        "|---|---:|---|---:|---:|---:|---|",
    ]
    for key, r in record["runs"].items():
        tr = r.get("train_rays")
        tr = f"{tr['train_mode']:.2f} / {tr['eval_mode']:.2f}" if tr else "-"
        lines.append(
            f"| {key} | {r['curve'][-1]['train_psnr']:.2f} | {tr} | {r['running']['psnr']:.2f} | "
            f"{r['batch']['psnr']:.2f} | {r['recalibrated']['psnr']:.2f} | {r['running']['fine_ssim']:.3f} / "
            f"{r['batch']['fine_ssim']:.3f} / {r['recalibrated']['fine_ssim']:.3f} |"
        )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    console.print("\n".join(lines))


if __name__ == "__main__":
    main(tyro.cli(Args))
