"""Why a Gauss network trained several times slower than ReLU on the CPU, and what the activation's code costs.

The occupancy benchmark measured Gauss (``exp(-(s z)^2 / 2)``, s = 10 sqrt(2)) at 0.66 s per step against ReLU's
0.12 (2x256, 25,000 points, one thread). Two causes are candidates: subnormal floats (a wide Gaussian of ``s z``
underflows through float32's subnormal range, and CPU arithmetic on subnormals is slow) and the number of
elementwise passes autograd makes for the formula. This driver times one training step of the occupancy setting
(armadillo, 2x256, 25,000 random grid points, BCE, Adam 5e-3) with three implementations of the same activation:

- ``formula``: ``torch.exp(-0.5 * (s * z) ** 2)``, autograd's backward (subnormals in the value and gradient);
- ``zeros``: the same with values below the smallest normal number set to zero (nerf_norm until 2026-12-07:
  no subnormal value, but autograd's backward still makes subnormal gradients);
- ``closed``: :func:`nerf_norm.networks.gauss_activation`, forward and backward in closed form, subnormal-free in
  both directions (nerf_norm now);

each with and without ``torch.set_flush_denormal(True)`` (the CPU treats subnormals as zero), beside ReLU and
``gauss+cn``. Steps are timed in interleaved rounds (``task_tables.measure_costs``); the table gives the median.
It also counts subnormal entries in the gradient each hidden layer's linear output receives (what the backward
matrix products read) after the timed steps.

    .venv/bin/python experiments/gauss_cpu_cost/gauss_cpu_cost.py   # writes experiments/gauss_cpu_cost/gauss_cpu_cost.{json,md}
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List

import torch
import tyro
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))  # the benchmarks' helpers
from task_tables import DATA, measure_costs, provenance, provenance_lines  # noqa: E402

from nerf_norm.networks import build_network, gauss_activation
from nerf_norm.tasks.occupancy import OccupancyTask


def formula(z: torch.Tensor, s: float) -> torch.Tensor:
    return torch.exp(-0.5 * (s * z) ** 2)


def zeros(z: torch.Tensor, s: float) -> torch.Tensor:
    exponent = 0.5 * (s * z) ** 2
    return torch.exp(-exponent).masked_fill(exponent > -math.log(torch.finfo(z.dtype).tiny), 0.0)


IMPLEMENTATIONS: Dict[str, Callable] = {"formula": formula, "zeros": zeros, "closed": gauss_activation}
#: label -> (method, implementation of the Gauss activation or None, flush subnormals)
CASES = {
    "relu": ("relu", None, False),
    "relu, flushed": ("relu", None, True),
    "gauss formula": ("gauss", "formula", False),
    "gauss formula, flushed": ("gauss", "formula", True),
    "gauss zeros": ("gauss", "zeros", False),
    "gauss zeros, flushed": ("gauss", "zeros", True),
    "gauss closed": ("gauss", "closed", False),
    "gauss closed, flushed": ("gauss", "closed", True),
    "gauss+cn zeros": ("gauss+cn", "zeros", False),
    "gauss+cn closed": ("gauss+cn", "closed", False),
}


@dataclass
class Args:
    """Time Gauss training steps with three implementations of its activation, with and without subnormals."""

    mesh: Path = DATA / "meshes" / "armadillo.obj"
    arch: str = "2x256"
    resolution: int = 96
    batch: int = 25_000
    steps: int = 20
    """timed steps per run (after 3 untimed ones)"""
    rounds: int = 3
    threads: int = 1
    out: Path = Path(__file__).resolve().parent / "gauss_cpu_cost"


def _subnormal_fraction(t: torch.Tensor) -> float:
    return ((t != 0) & (t.abs() < torch.finfo(t.dtype).tiny)).double().mean().item()


class _Run:
    """One network of a case on the task, with its optimiser and sampler (seed 0)."""

    def __init__(self, label: str, task: OccupancyTask, args: Args) -> None:
        method, implementation, self.flush = CASES[label]
        torch.manual_seed(0)
        self.model = build_network(method, 3, 1, args.arch)
        if implementation is not None:
            for layer in self.model.hidden:
                layer.activation = IMPLEMENTATIONS[implementation]
        self.optimizer = torch.optim.Adam(self.model.parameters(), 5e-3)
        self.generator = torch.Generator().manual_seed(0)
        self.task, self.points = task, task.coords()

    def step(self) -> None:
        index = self.task.sample(self.generator)
        loss = self.task.loss(self.model(self.points[index]), index)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def subnormal_gradients(self) -> List[float]:
        """Fraction of subnormal entries in the gradient of each hidden layer's linear output, over one step."""
        grads: List[torch.Tensor] = []
        hidden_linears = [m for name, m in self.model.named_modules() if isinstance(m, nn.Linear) and name != "output"]

        def keep_gradient(module: nn.Module, inputs, out: torch.Tensor) -> None:
            out.register_hook(grads.append)

        hooks = [m.register_forward_hook(keep_gradient) for m in hidden_linears]
        self.step()
        for h in hooks:
            h.remove()
        return [_subnormal_fraction(g) for g in reversed(grads)]  # backward meets the last layer first


def main(args: Args) -> None:
    torch.set_num_threads(args.threads)
    task = OccupancyTask(args.mesh, args.resolution, args.batch)
    subnormals: Dict[str, List[float]] = {}

    def short_run(label: str, _out: Path) -> Dict[str, List[float]]:
        run = _Run(label, task, args)
        torch.set_flush_denormal(run.flush)
        try:
            for _ in range(3):
                run.step()
            start = time.perf_counter()
            for _ in range(args.steps):
                run.step()
            elapsed = time.perf_counter() - start
            subnormals[label] = run.subnormal_gradients()
        finally:
            torch.set_flush_denormal(False)  # torch's default: subnormals kept
        return {"iteration": [0, args.steps], "seconds": [0.0, elapsed]}

    rounds = measure_costs(list(CASES), args.rounds, short_run, args.threads)
    setting = (
        f"occupancy of {args.mesh.stem} at {args.resolution}^3, {args.arch}, {args.batch:,} random grid points per "
        f"step, BCE, Adam 5e-3, seed 0; {args.steps} timed steps after 3 untimed, {args.rounds} interleaved rounds"
    )
    seconds = {label: statistics.median(v) for label, v in rounds.items()}
    record = {
        "meta": provenance("experiments/gauss_cpu_cost/gauss_cpu_cost", args.threads, setting),
        "seconds_per_step": seconds,
        "rounds": rounds,
        "subnormal_gradient_fraction": subnormals,
    }
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=1))
    relu = seconds["relu"]
    lines = [
        *provenance_lines("Gauss on the CPU: what its training step costs, and why", record["meta"]),
        "",
        "| case | seconds per step | x relu | subnormal share of the gradient at each hidden layer's linear output |",
        "| --- | ---: | ---: | --- |",
    ]
    for label in CASES:
        shares = ", ".join(f"{100 * f:.1f}%" for f in subnormals[label])
        lines.append(f"| {label} | {seconds[label]:.3f} | {seconds[label] / relu:.1f} | {shares} |")
    lines += [
        "",
        "`formula`: autograd through `exp(-0.5 (s z)^2)`; `zeros`: the same, values below float32's smallest normal "
        "number set to zero (nerf_norm until 2026-12-07); `closed`: `nerf_norm.networks.gauss_activation` (value and "
        "gradient in closed form, both without subnormals). `flushed`: `torch.set_flush_denormal(True)`.",
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(tyro.cli(Args))
