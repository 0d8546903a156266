"""Occupancy with batch-statistics norms: the evaluation bug and its fix, measured.

Occupancy trains on random batches of grid points. Until 2026-11-24 its networks kept no running statistics, so
the evaluation of the whole grid, in grid-order chunks of 131,072 points, normalized each chunk (a slab of the
volume) with its own statistics, unlike any training batch: BN/GN/CN runs scored far below their training
batches (bunny pe+cn at 96^3: 0.55 against 0.98). Now the batch-coupled norms of a task trained on batches keep
running statistics, re-estimated at the final weights before evaluation (``nerf_norm/tasks/base.py``). For every
such run of the occupancy table (its checkpoint under ``benchmarks/scratch/occupancy``; missing runs are trained
there with the table's settings) this driver evaluates the whole grid five ways:

- ``chunks``: the evaluation before the fix: grid-order chunks of 131,072 points, each with its own statistics;
- ``running``: eval mode with the running averages of training (the checkpoint's buffers);
- ``refreshed``: eval mode with running statistics re-estimated at the final weights over ``--refresh`` fresh
  training batches (what the table reports now);
- ``batches``: the grid in random batches of the training batch size, each with its own statistics, as training
  sees points;
- ``train_batch``: the IoU of the run's last logged training batch (from its history).

    .venv/bin/python experiments/occupancy_eval_gap/occupancy_eval_gap.py   # writes experiments/occupancy_eval_gap/occupancy_eval_gap.{json,md}
"""

from __future__ import annotations

import copy
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import tyro

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))  # the benchmarks' helpers
from occupancy import Args as TableArgs  # noqa: E402
from task_tables import SCRATCH, provenance, provenance_lines  # noqa: E402

from nerf_norm.norms.running_statistics import norms_with_running_statistics, refresh_statistics
from nerf_norm.tasks.commands import OccupancyCommand, fit_network, run_occupancy
from nerf_norm.tasks.occupancy import iou


@dataclass
class Args:
    """Evaluate the occupancy table's batch-coupled runs: before / after the evaluation fix, and batch statistics."""

    methods: tuple[str, ...] = ("relu+bn", "relu+gn", "relu+cn", "pe+bn", "pe+gn", "pe+cn")
    refresh: int = 16
    """training batches for the refreshed statistics"""
    threads: int = 2
    runs: Path = SCRATCH / "occupancy"
    """the occupancy table's run folders (MESH/METHOD with + as _)"""
    out: Path = Path(__file__).resolve().parent / "occupancy_eval_gap"


KINDS = ("chunks", "running", "refreshed", "batches", "train_batch")


def _logits(model: torch.nn.Module, points: torch.Tensor, chunk: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(part).reshape(-1) for part in points.split(chunk)])


def _batch_statistics_logits(model: torch.nn.Module, points: torch.Tensor, batch: int, seed: int) -> torch.Tensor:
    """Training-mode logits of every point, the points in random batches of ``batch`` (a copy of ``model``: the
    training-mode passes would move its running statistics)."""
    model = copy.deepcopy(model).train()
    order = torch.randperm(len(points), generator=torch.Generator().manual_seed(seed))
    out = torch.empty(len(points))
    with torch.no_grad():
        for idx in order.split(batch):
            out[idx] = model(points[idx]).reshape(-1)
    return out


def _own_statistics(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose norms normalize every chunk with the chunk's own statistics in eval mode."""
    model = copy.deepcopy(model).eval()
    for norm in norms_with_running_statistics(model):
        norm.track_running_stats = False
    return model


def evaluate(mesh: Path, method: str, table: TableArgs, args: Args) -> dict:
    out = args.runs / mesh.stem / method.replace("+", "_")
    cmd = OccupancyCommand(
        mesh=mesh,
        method=method,
        arch=table.arch,
        resolution=table.resolution,
        batch=table.batch,
        iters=table.iters,
        seed=table.seed,
        quiet=True,
        resume=True,
        out=out,
        threads=args.threads,
    )
    result, task = run_occupancy(cmd)  # trains only what the checkpoint lacks
    model = fit_network(cmd, task)
    model.load_state_dict(torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)["model"])
    model.eval()  # the checkpoint's buffers: the running averages of training
    points, target = task.coords(), task.target
    refreshed = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(12345)
    refresh_statistics(refreshed, lambda k: refreshed(points[task.sample(generator)]), args.refresh)
    logits = {
        "chunks": _logits(_own_statistics(model), points, 1 << 17),
        "running": _logits(model, points, task.eval_chunk),
        "refreshed": _logits(refreshed, points, task.eval_chunk),
        "batches": _batch_statistics_logits(model, points, cmd.batch, seed=1),
    }
    return {
        "case": mesh.stem,
        "method": method,
        "table_iou": result.metrics["iou"],
        **{f"iou_{k}": iou(v > 0, target) for k, v in logits.items()},
        "iou_train_batch": result.history["iou"][-1],
        "norms": len(norms_with_running_statistics(model)),
    }


def main(args: Args) -> None:
    table = TableArgs()
    torch.set_num_threads(args.threads)
    json_path = args.out.with_suffix(".json")
    setting = (
        f"the runs of benchmarks/occupancy.py ({table.arch}, {table.resolution}^3 grid, {table.batch:,} points "
        f"per step, {table.iters} steps, seed {table.seed}); refreshed statistics over {args.refresh} "
        "training batches; batch statistics over random batches of the training batch size"
    )
    record = {"meta": provenance("occupancy_eval_gap", args.threads, setting), "runs": []}
    for mesh in table.meshes:
        for method in args.methods:
            row = evaluate(mesh, method, table, args)
            record["runs"].append(row)
            print(
                f"{row['case']:10s} {method:8s} " + "  ".join(f"{k} {row['iou_' + k]:.3f}" for k in KINDS), flush=True
            )
            json_path.write_text(json.dumps(record, indent=1))
    meta = record["meta"]
    lines = [
        *provenance_lines("Occupancy with batch-coupled norms: the evaluation before and after the fix", meta),
        "",
        "IoU of the whole grid: `chunks` grid-order chunks of 131,072 points with their own statistics (the "
        "evaluation before the fix); `running` the running averages of training; `refreshed` running "
        "statistics re-estimated at the final weights (the table's evaluation now); `batches` random batches "
        "of the training size with their own statistics; `train_batch` the last logged training batch",
        "",
        "| mesh | method | " + " | ".join(KINDS) + " |",
        "|---|---|" + "---:|" * len(KINDS),
    ]
    for r in record["runs"]:
        lines.append(f"| {r['case']} | {r['method']} | " + " | ".join(f"{r['iou_' + k]:.3f}" for k in KINDS) + " |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main(tyro.cli(Args))
