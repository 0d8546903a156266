"""Why a neus-cn evaluation sometimes finds no surface: running statistics or the weights?

In ``benchmarks/neus_equal_time.py`` one evaluation of each neus-cn run extracted an SDF without a zero crossing
(bunny at step 2361, dragon at 2001) while the evaluations before and after had a surface. Evaluation uses the
norms' running statistics (an exponential average of the column statistics of past training batches). This
driver repeats the bunny neus-cn run of that benchmark (same settings and seed: constant rate after the warm-up,
one torch thread) and, every ``--every`` steps from ``--eval-from`` on, evaluates the SDF on the
``--resolution``^3 grid of the scene box three ways:

- ``running``: eval mode, the running statistics (what mesh extraction and the benchmark use);
- ``last batch``: eval mode with the running statistics replaced by the column statistics of the step's first
  SDF-network call (the norms take those samples once more with momentum 1, without gradient; every buffer is
  restored afterwards);
- ``refreshed``: eval mode with running statistics re-estimated at the current weights over ``--refresh``
  fresh training batches (``nerf_norm.nerfstudio.statistics.refresh_running_statistics``, what
  ``nerf-norm extract-mesh --refresh-stats`` does), restored afterwards;
- the SDF of the training batch's own samples in training mode (batch statistics), whose sign change says whether
  the network, as trained, still has a surface where the rays look.

For each it records whether a zero crossing exists and the fraction of the grid inside (SDF < 0), plus how far
the running column means are from the last batch's (max over channels and layers, in running standard
deviations).

    .venv/bin/python experiments/neus_eval_gap/neus_eval_gap.py   # writes experiments/neus_eval_gap/neus_eval_gap.{json,md}
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import tyro

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))  # the benchmarks' helpers
from neus_equal_time import Args as EqualTimeArgs, _scene, equal_time_config  # noqa: E402
from task_tables import provenance  # noqa: E402

HERE = Path(__file__).resolve().parent  # this experiment's folder: its results
BENCHMARKS = HERE.parents[1] / "benchmarks"


@dataclass
class Args:
    steps: int = 2400
    eval_from: int = 1500
    every: int = 10
    """evaluate every this many steps from --eval-from on"""
    refresh: int = 8
    """training batches for the refreshed statistics"""
    resolution: int = 64
    threads: int = 1
    scratch: Path = BENCHMARKS / "scratch" / "neus_eval_gap"
    out: Path = HERE / "neus_eval_gap"


def _grid(resolution: int) -> torch.Tensor:
    axis = torch.linspace(-1.0, 1.0, resolution)
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)


def _sdf_summary(sdf: torch.Tensor) -> dict:
    inside = float((sdf < 0).double().mean())
    return {"inside": inside, "surface": 0.0 < inside < 1.0, "min": float(sdf.min()), "max": float(sdf.max())}


@contextlib.contextmanager
def _statistics_restored(norms):
    """Yields each norm's buffers as they were (a list of name -> tensor copies); puts them and the momenta back."""
    saved = [({k: v.clone() for k, v in m.named_buffers()}, m.momentum) for m in norms]
    try:
        yield [buffers for buffers, _ in saved]
    finally:
        for m, (buffers, momentum) in zip(norms, saved):
            for k, v in buffers.items():
                getattr(m, k).copy_(v)
            m.momentum = momentum


@torch.no_grad()
def _grid_sdf(field, grid: torch.Tensor, chunk: int = 32768) -> torch.Tensor:
    return torch.cat([field.forward_geonetwork(grid[i : i + chunk])[:, 0] for i in range(0, len(grid), chunk)])


def main(args: Args) -> None:
    from nerf_norm.nerfstudio.experiment import setup_trainer, train_step
    from nerf_norm.nerfstudio.statistics import norms_with_running_statistics, refresh_running_statistics

    torch.set_num_threads(args.threads)
    scene = _scene(EqualTimeArgs(scene="bunny"))
    trainer = setup_trainer(equal_time_config(scene, args.scratch, "cn", seed=0))
    model = trainer.pipeline.model
    field = model.field
    grid = _grid(args.resolution)
    norms = norms_with_running_statistics(field)  # the SDF network's CrossNorms

    batch = {}

    def keep_batch(module, inputs, output):  # the step's first SDF-network call (NeuS' up-sampler's first samples)
        if module.training and "points" not in batch:
            batch["points"] = inputs[0].detach().reshape(-1, 3)
            batch["sdf"] = output[..., 0].detach().reshape(-1)

    original = field.forward_geonetwork

    def forward_geonetwork(inputs):
        out = original(inputs)
        keep_batch(field, (inputs,), out)
        return out

    field.forward_geonetwork = forward_geonetwork
    log = []
    t0 = time.time()
    for step in range(args.steps):
        batch.clear()
        train_step(trainer, step)
        if step + 1 < args.eval_from or (step + 1) % args.every:
            continue
        entry = {"step": step + 1, "train_batch": _sdf_summary(batch["sdf"])}
        model.eval()
        entry["running"] = _sdf_summary(_grid_sdf(field, grid))
        model.train()
        # the last batch's column statistics in place of the running ones: the norms take that batch once more
        # with momentum 1 (no gradient) and the grid is evaluated; then the running statistics re-estimated over
        # fresh batches; every buffer and momentum is put back after each
        with _statistics_restored(norms) as saved:
            for m in norms:
                m.momentum = 1.0
            with torch.no_grad():
                field.forward_geonetwork(batch["points"])  # training mode: updates the running statistics
            shift = max(
                float(((b["running_mean"] - m.running_mean).abs() / b["running_var"].sqrt().clamp_min(1e-12)).max())
                for m, b in zip(norms, saved)
            )
            model.eval()
            entry["last_batch"] = _sdf_summary(_grid_sdf(field, grid))
            model.train()
        entry["running_vs_batch_mean_in_std"] = shift
        with _statistics_restored(norms):
            refresh_running_statistics(trainer.pipeline, args.refresh, start_step=step + 1)
            entry["refreshed"] = _sdf_summary(_grid_sdf(field, grid))
            model.train()
        log.append(entry)
        print(
            f"step {entry['step']}: surface running {entry['running']['surface']} "
            f"(inside {entry['running']['inside']:.4f}), last batch {entry['last_batch']['surface']} "
            f"(inside {entry['last_batch']['inside']:.4f}), refreshed {entry['refreshed']['surface']} "
            f"(inside {entry['refreshed']['inside']:.4f}), training samples {entry['train_batch']['surface']}, "
            f"running vs batch mean {shift:.2f} std  [{time.time() - t0:.0f} s]",
            flush=True,
        )

    gaps = [e for e in log if not e["running"]["surface"]]
    record = {
        "meta": provenance(
            "neus_eval_gap",
            args.threads,
            f"bunny neus-cn of benchmarks/neus_equal_time.py repeated (same settings, seed 0) for "
            f"{args.steps} steps, SDF on a {args.resolution}^3 grid every {args.every} steps "
            f"from step {args.eval_from}",
        ),
        "log": log,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=1))
    meta = record["meta"]
    n = len(log)
    count = lambda key: sum(1 for e in log if not e[key]["surface"])  # noqa: E731
    lines = [
        "# neus-cn evaluations without a surface: running statistics or weights?",
        "",
        f"- command: `{meta['command']}`",
        f"- machine: {meta['machine']}",
        f"- setting: {meta['setting']}",
        f"- date: {meta['date']}",
        "",
        "| SDF evaluated with | evaluations without a zero crossing |",
        "|---|---:|",
        f"| running statistics (eval mode, as mesh extraction) | {count('running')} of {n} |",
        f"| the last training batch's column statistics (eval mode) | {count('last_batch')} of {n} |",
        f"| running statistics re-estimated over {args.refresh} fresh training batches (eval mode) | "
        f"{count('refreshed')} of {n} |",
        f"| batch statistics, on the training batch's own samples | {count('train_batch')} of {n} |",
        "",
        "| step | running: inside fraction | last batch: inside fraction | refreshed: inside fraction | "
        "training samples: SDF min / max | running vs batch column mean (std) |",
        "|---:|---:|---:|---:|---|---:|",
    ]
    for e in gaps + [e for e in log if e not in gaps][:5]:
        lines.append(
            f"| {e['step']} | {e['running']['inside']:.4f} | {e['last_batch']['inside']:.4f} | "
            f"{e['refreshed']['inside']:.4f} | "
            f"{e['train_batch']['min']:.3f} / {e['train_batch']['max']:.3f} | "
            f"{e['running_vs_batch_mean_in_std']:.2f} |"
        )
    lines += [
        "",
        "Rows: every evaluation whose running-statistics SDF had no zero crossing, then the first five "
        "that had one, for comparison.",
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(tyro.cli(Args))
