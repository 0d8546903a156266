"""Which CrossNorm / GlobalNorm implementation earns its place: time and memory of every path.

An 8x256 MLP (Linear -> norm -> ReLU, 8 times) on ``[rows, 256]`` inputs, the CPU standing in for a GPU, for
each implementation of the norm:

- ``spec``: the plain differentiable statement (autograd builds every derivative);
- ``compiled``: the same statement under ``torch.compile(fullgraph=True)`` (first order only: torch.compile has no
  double backward);
- ``eager``: the closed-form Function on eager torch ops (what a GPU runs), ``NERF_NORM_KERNEL=torch``;
- ``kernel``: the fused CPU kernels (the CPU's default).

and two workloads: ``first`` (forward + backward of a loss on the output) and ``second`` (NeuS' case: the input
gradient is part of the loss, so backward differentiates a backward). Each (norm, path, workload) runs in its own
subprocess: ``peak_mib`` is its peak resident memory above the state before the first step (ru_maxrss; large
tensors are mmapped, so they are returned to the OS when freed), ``saved_mib`` the tensors autograd keeps for the
backward (counted by ``torch.autograd.graph.saved_tensors_hooks``, each storage once). Times are medians of
``--rounds`` steps after one warm-up.

    .venv/bin/python benchmarks/cross_norm_paths.py        # writes benchmarks/results/cross_norm_paths.{jsonl,md}
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Tuple

import torch
import tyro
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import append_rows, provenance, provenance_markdown, read_rows  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
PATHS = ("spec", "compiled", "eager", "kernel")
WORKLOADS = ("first", "second")


@dataclass
class Args:
    rows: int = 131072
    """T, the samples of one batch"""
    width: int = 256
    layers: int = 8
    rounds: int = 3
    threads: int = 2
    norms: Tuple[str, ...] = ("cn", "gn")
    paths: Tuple[str, ...] = PATHS
    workloads: Tuple[str, ...] = WORKLOADS
    out: Path = RESULTS / "cross_norm_paths"
    """writes OUT.jsonl (one row per measurement, appended; a rerun skips what is there) and OUT.md"""
    report_only: bool = False
    force: bool = False
    """measure the selected combinations again even where a result exists (the newest row of each counts)"""
    memory_limit_gib: float = 20.0
    """address-space limit of each measuring subprocess (an allocation failure instead of the OOM killer)"""


class SpecNorm(nn.Module):
    """The norm as its plain differentiable statement, with the layer's affine parameters."""

    def __init__(self, norm: str, width: int) -> None:
        super().__init__()
        self.norm = norm
        self.weight = nn.Parameter(torch.ones(width))
        self.bias = nn.Parameter(torch.zeros(width))

    def forward(self, x):
        from nerf_norm.norms import spec

        if self.norm == "cn":
            return spec.cross_norm_spec(x, self.weight, self.bias)
        return spec.global_norm_spec(x, self.weight, self.bias)


def build(norm: str, path: str, width: int, layers: int) -> nn.Module:
    from nerf_norm.norms import make_norm

    mods = []
    for _ in range(layers):
        mods.append(nn.Linear(width, width))
        mods.append(SpecNorm(norm, width) if path in ("spec", "compiled") else make_norm(norm, width))
        mods.append(nn.ReLU())
    model = nn.Sequential(*mods)
    return torch.compile(model, fullgraph=True) if path == "compiled" else model


def _rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(norm: str, path: str, workload: str, args: Args) -> dict:
    """Runs in the measuring subprocess."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build(norm, path, args.width, args.layers)
    x = torch.randn(args.rows, args.width) * 3.0 + 1.0

    def step() -> None:
        xi = x.detach().requires_grad_(workload == "second")
        y = model(xi)
        loss = y.square().mean()
        if workload == "second":
            (g,) = torch.autograd.grad(y.sum(), xi, create_graph=True)
            loss = loss + g.square().mean()
        loss.backward()

    saved = {}

    def pack(t):
        saved[(t.untyped_storage().data_ptr(), t.dtype)] = t.untyped_storage().nbytes()
        return t

    if path == "compiled":  # compilation is not part of a step: compile (and warm up) first
        step()
    base = _rss_mib()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
    times = []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {
        "peak_mib": round(peak, 1),
        "saved_mib": round(sum(saved.values()) / 2**20, 1),
        "seconds": round(statistics.median(times), 4),
        "seconds_all": [round(t, 4) for t in times],
    }


def _child(norm: str, path: str, workload: str, args_json: str) -> None:
    args = Args(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in json.loads(args_json).items() if k != "out"})
    limit = int(args.memory_limit_gib * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        result = measure(norm, path, workload, args)
    except (RuntimeError, MemoryError) as exc:
        result = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
    print("RESULT " + json.dumps(result), flush=True)


def run_one(norm: str, path: str, workload: str, args: Args) -> dict:
    if path == "compiled" and workload == "second":
        return {"error": "not supported: torch.compile has no double backward"}
    env = {**os.environ, "NERF_NORM_KERNEL": "torch" if path == "eager" else "auto"}
    settings = {k: v for k, v in vars(args).items() if k not in ("out",)}
    proc = subprocess.run(
        [sys.executable, __file__, "--child", norm, path, workload, json.dumps(settings, default=list)],
        env=env,
        capture_output=True,
        text=True,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"error": f"exit {proc.returncode}: " + (proc.stderr.strip().splitlines() or ["killed"])[-1][:200]}


VERDICT = {
    "spec": "the specification: what tests compare against, what torch.compile traces, what the synchronized "
    "layers and the NTK differentiate; never the fast path",
    "compiled": "what `torch.compile(fullgraph=True)` runs (the spec traced; Triton on a GPU); first order only",
    "eager": "the closed-form Functions on eager torch ops: what a GPU runs without torch.compile; kept where it "
    "needs less memory or time than the spec",
    "kernel": "the fused CPU kernels: the CPU's default",
}


def report(args: Args) -> None:
    rows = read_rows(args.out.with_suffix(".jsonl"))
    if not rows:
        return
    latest = {}
    for row in rows:
        latest[(row["norm"], row["workload"], row["path"])] = row
    lines = [
        "# CrossNorm and GlobalNorm: what each implementation costs",
        "",
        *provenance_markdown(rows[-1]["meta"]),
        "",
        f"An {args.layers}x{args.width} MLP (Linear -> norm -> ReLU) on [{args.rows}, {args.width}]; one training "
        "step. `first`: forward + backward; `second`: the input gradient is in the loss (NeuS' eikonal case). "
        "peak: resident memory above the state before the step; saved: tensors autograd keeps for backward; "
        "x spec: the ratio to the spec's time and peak memory in the same workload.",
        "",
        "| norm | workload | path | seconds | peak MiB | saved MiB | x spec (time) | x spec (peak) |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for (norm, workload, path), row in sorted(
        latest.items(), key=lambda kv: (kv[0][0], kv[0][1], PATHS.index(kv[0][2]))
    ):
        r = row["result"]
        if "error" in r:
            lines.append(f"| {norm} | {workload} | {path} | {r['error']} | | | | |")
            continue
        spec = latest.get((norm, workload, "spec"), {}).get("result", {})
        ratio_t = f"{r['seconds'] / spec['seconds']:.2f}" if "seconds" in spec else ""
        ratio_m = f"{r['peak_mib'] / spec['peak_mib']:.2f}" if "peak_mib" in spec else ""
        lines.append(
            f"| {norm} | {workload} | {path} | {r['seconds']:.2f} | {r['peak_mib']:.0f} | "
            f"{r['saved_mib']:.0f} | {ratio_t} | {ratio_m} |"
        )
    lines += ["", "What each path is for:", ""] + [f"- `{k}`: {v}." for k, v in VERDICT.items()]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(args: Args) -> None:
    path_jsonl = args.out.with_suffix(".jsonl")
    if not args.report_only:
        # a failed measurement (not an unsupported combination) is measured again by a rerun
        done = {
            (r["norm"], r["path"], r["workload"])
            for r in read_rows(path_jsonl)
            if not r["result"].get("error", "not supported").startswith("exit")
        }
        settings = {k: v for k, v in vars(args).items() if k in ("rows", "width", "layers", "rounds", "threads")}
        for norm in args.norms:
            for workload in args.workloads:
                for path in args.paths:
                    if (norm, path, workload) in done and not args.force:
                        continue
                    print(f"[cross_norm_paths] {norm} {workload} {path} ...", flush=True)
                    result = run_one(norm, path, workload, args)
                    print(f"[cross_norm_paths]   {result}", flush=True)
                    append_rows(
                        path_jsonl,
                        [
                            {
                                "norm": norm,
                                "path": path,
                                "workload": workload,
                                "result": result,
                                "meta": provenance(settings),
                            }
                        ],
                    )
    report(args)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(*sys.argv[2:6])
    else:
        main(tyro.cli(Args))
