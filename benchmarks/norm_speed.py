"""Norm speed: one Adam training iteration (forward + backward + step) of a ReLU coordinate MLP.

Every configuration runs in its own subprocess so that its peak resident memory can be read separately.
Times are medians over ``--iters`` iterations after ``--warmup``; ratios are to the plain MLP of the same run.

    .venv/bin/python benchmarks/norm_speed.py            # writes benchmarks/results/norm_speed.{json,md}
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import tyro
from provenance import machine_line, provenance
from torch import nn

RESULTS = Path(__file__).resolve().parent / "results"

# name -> (description, norm factory or None)
CONFIGS = {
    "none": "plain ReLU MLP",
    "torch-bn": "torch.nn.BatchNorm1d",
    "torch-ln": "torch.nn.LayerNorm",
    "bn": "nerf_norm BatchNorm",
    "ln": "nerf_norm LayerNorm",
    "gn": "nerf_norm GlobalNorm",
    "cn-paper": "nerf_norm CrossNorm, paper variant (default: fused CPU kernel)",
    "cn-reference": "nerf_norm CrossNorm, reference variant (default: fused CPU kernel)",
    "cn-paper-eager": "nerf_norm CrossNorm, paper variant, eager closed-form path (NERF_NORM_KERNEL=torch)",
    "cn-reference-eager": "nerf_norm CrossNorm, reference variant, eager closed-form path (NERF_NORM_KERNEL=torch)",
    "cn-paper-autograd": "CrossNorm paper variant, straightforward autograd formulation",
    "cn-reference-autograd": "CrossNorm reference variant, straightforward autograd formulation",
}


class _AutogradCN(nn.Module):
    def __init__(self, c: int, variant: str) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))
        self.variant = variant

    def forward(self, x):
        from nerf_norm.norms import cross_norm_autograd

        return cross_norm_autograd(x, self.weight, self.bias, variant=self.variant)


def _norm(name: str, c: int) -> nn.Module:
    from nerf_norm.norms import CrossNorm, make_norm

    if name == "torch-bn":
        return nn.BatchNorm1d(c)
    if name == "torch-ln":
        return nn.LayerNorm(c)
    if name.endswith("-autograd"):
        return _AutogradCN(c, name.split("-")[1])
    if name.startswith("cn-"):
        return CrossNorm(c, variant=name.split("-")[1])  # the path is chosen by NERF_NORM_KERNEL
    return make_norm(name, c)


def _mlp(name: str, layers: int, width: int) -> nn.Module:
    blocks, w_in = [], 2
    for _ in range(layers):
        blocks += [nn.Linear(w_in, width), _norm(name, width), nn.ReLU(inplace=True)]
        w_in = width
    return nn.Sequential(*blocks, nn.Linear(w_in, 3))


def measure_one(name: str, layers: int, width: int, side: int, iters: int, warmup: int, threads: int) -> dict:
    import os

    if name.endswith("-eager"):
        os.environ["NERF_NORM_KERNEL"] = "torch"
    elif name.startswith("cn-") and not name.endswith("-autograd"):
        os.environ["NERF_NORM_KERNEL"] = "cpp"  # fail loudly rather than time the fallback
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    lin = torch.linspace(-1, 1, side)
    coords = torch.stack(torch.meshgrid(lin, lin, indexing="ij"), -1).reshape(-1, 2)
    target = torch.rand(coords.shape[0], 3)
    model = _mlp(name, layers, width)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    times = []
    for i in range(warmup + iters):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = ((model(coords) - target) ** 2).mean()
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return {
        "name": name,
        "ms": [1e3 * t for t in times],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }


@dataclass
class Args:
    """Time one Adam iteration of a ReLU MLP with each norm."""

    arch: str = "10x28"
    """hidden layers x hidden features"""
    side: int = 256
    """coordinates on a side x side grid (T = side^2)"""
    iters: int = 8
    """timed iterations per configuration and round"""
    rounds: int = 3
    """configurations are interleaved over this many rounds (each a fresh process), so that drift in the
    machine's speed affects all of them alike"""
    warmup: int = 3
    threads: int = 2
    configs: tuple[str, ...] = tuple(CONFIGS)
    out: Path = RESULTS / "norm_speed"
    """output stem: writes OUT.json and OUT.md"""
    child: str | None = None
    """(internal) measure this single configuration and print JSON"""


def main(args: Args) -> None:
    layers, width = (int(v) for v in args.arch.lower().split("x"))
    if args.child:
        print(json.dumps(measure_one(args.child, layers, width, args.side, args.iters, args.warmup, args.threads)))
        return
    samples = {name: [] for name in args.configs}
    peak = {name: 0.0 for name in args.configs}
    for rnd in range(args.rounds):
        for name in args.configs:
            cmd = [
                sys.executable,
                __file__,
                "--child",
                name,
                "--arch",
                args.arch,
                "--side",
                str(args.side),
                "--iters",
                str(args.iters),
                "--warmup",
                str(args.warmup),
                "--threads",
                str(args.threads),
            ]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            res = json.loads(out)
            samples[name] += res["ms"]
            peak[name] = max(peak[name], res["peak_rss_mb"])
            print(f"round {rnd + 1}/{args.rounds} {name:24s} {statistics.median(res['ms']):8.1f} ms", flush=True)
    rows = [
        {
            "name": name,
            "description": CONFIGS[name],
            "ms_median": statistics.median(samples[name]),
            "ms_min": min(samples[name]),
            "peak_rss_mb": peak[name],
            "n_samples": len(samples[name]),
        }
        for name in args.configs
    ]
    base = next(r for r in rows if r["name"] == "none")["ms_median"]
    by = {r["name"]: r for r in rows}
    for r in rows:
        r["ratio_to_none"] = r["ms_median"] / base
    summary = {}
    for v in ("paper", "reference"):
        for fast in (f"cn-{v}", f"cn-{v}-eager"):
            if fast in by and "torch-bn" in by:
                summary[f"{fast}_over_torch-bn"] = by[fast]["ms_median"] / by["torch-bn"]["ms_median"]
            if fast in by and f"cn-{v}-autograd" in by:
                summary[f"cn-{v}-autograd_over_{fast}"] = by[f"cn-{v}-autograd"]["ms_median"] / by[fast]["ms_median"]
    record = provenance({k: str(v) for k, v in vars(args).items()})
    meta = {
        "command": record["command"],
        "commit": record["commit"],
        "machine": machine_line(record) + f" (requested {args.threads})",
        "setting": f"ReLU MLP {args.arch}, T = {args.side}x{args.side} = {args.side**2} coordinates, Adam lr 1e-3, "
        f"median of {args.rounds} interleaved rounds x {args.iters} iterations (each round a fresh process, "
        f"{args.warmup} warm-up iterations); peak RSS of the process, max over rounds",
        "date": record["date"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows, "summary": summary}, indent=2))
    lines = [
        "# Norm speed: one training iteration\n",
        f"- command: `{meta['command']}`",
        f"- machine: {meta['machine']}",
        f"- setting: {meta['setting']}",
        f"- date: {meta['date']}\n",
        "| config | ms / iter | x plain MLP | peak RSS (MB) | what |",
        "|---|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['ms_median']:.1f} | {r['ratio_to_none']:.2f} | {r['peak_rss_mb']:.0f} | "
            f"{r['description']} |"
        )
    if summary:
        lines.append("")
        lines += [f"- {k.replace('_over_', ' / ')}: **{v:.2f}x**" for k, v in summary.items()]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(tyro.cli(Args))
