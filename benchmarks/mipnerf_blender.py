"""Mip-NeRF on Blender lego at a CPU budget: nerfstudio's ``mipnerf`` against ``mipnerf-{cn,bn,ln,gn}``.

All methods use the ``mipnerf-cn-lite`` settings (128 rays per step, 32 + 32 samples, RAdam 5e-4, our checked
Blender parser) on the real lego scene downscaled by ``--scale`` (400x400 -> 100x100 at 0.25). Two phases:

1. speed: every method's trainer is built, then steps are timed in interleaved rounds (A, B, ..., then ..., B, A)
   so that drift of this shared machine hits all methods alike; s/iter is the median round and the ratio to
   ``mipnerf`` the median of the per-round ratios.
2. quality: each method trains ``--steps`` steps (nerfstudio's own ``mipnerf`` first); test-split PSNR/SSIM over
   the first ``--test-images`` test views at equal iterations, and at equal wall-clock: after
   ``steps / ratio`` steps, with the interleaved ratio of phase 1 (so the quality phase does not
   depend on how busy the machine is while it runs; its own training seconds are recorded too).

Results go to OUT.json after every method (re-running resumes) and OUT.md.

    .venv/bin/python benchmarks/mipnerf_blender.py      # writes benchmarks/results/mipnerf_lego.{json,md}
"""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict

import torch
import tyro
from provenance import machine_line, provenance
from rich.console import Console

from nerf_norm.nerfstudio.experiment import RunSettings, configure, evaluate, lite_config, setup_trainer, train_step

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("NERF_NORM_DATA", HERE.parent.parent / "shared" / "data")) / "blender" / "lego"
console = Console()


@dataclass
class Args:
    data: Path = DATA
    """Blender-format scene (default: ../shared/data/blender/lego)"""
    scale: float = 0.25
    """image downscaling (camera_res_scale_factor)"""
    methods: tuple[str, ...] = ("mipnerf", "mipnerf-cn", "mipnerf-bn", "mipnerf-ln", "mipnerf-gn")
    """the first is the reference of the ratios and of the equal-time budget"""
    steps: int = 600
    test_images: int = 8
    timing_rounds: int = 8
    timing_steps: int = 8
    threads: int = 2
    seed: int = 0
    out: Path = HERE / "results" / "mipnerf_lego"
    scratch: Path = HERE / "scratch" / "mipnerf_lego"


def _settings(args: Args, method: str, steps: int) -> RunSettings:
    return RunSettings(args.data, args.scratch / method, steps, args.seed, image_scale=args.scale)


def _trainer(args: Args, method: str, steps: int):
    return setup_trainer(configure(lite_config(method), _settings(args, method, steps)))


def time_methods(args: Args) -> Dict[str, dict]:
    """Seconds per step in interleaved rounds (order reversed every other round, one untimed step first).

    ``s_per_iter`` is the median over rounds; ``ratio`` the median of the per-round ratios to the reference
    method (paired within a round, so drift of the machine between rounds cancels).
    """
    trainers = {m: _trainer(args, m, 10**6) for m in args.methods}
    step = dict.fromkeys(args.methods, 0)
    rounds: Dict[str, list] = {m: [] for m in args.methods}
    for r in range(args.timing_rounds):
        for m in args.methods if r % 2 == 0 else args.methods[::-1]:
            trainer = trainers[m]
            train_step(trainer, step[m])
            step[m] += 1
            start = time.perf_counter()
            for _ in range(args.timing_steps):
                train_step(trainer, step[m])
                step[m] += 1
            rounds[m].append((time.perf_counter() - start) / args.timing_steps)
        console.print(f"timing round {r}: " + ", ".join(f"{m} {v[-1]:.3f}" for m, v in rounds.items()))
    ref = rounds[args.methods[0]]
    return {
        m: {"s_per_iter": statistics.median(v), "ratio": statistics.median(a / b for a, b in zip(v, ref)), "rounds": v}
        for m, v in rounds.items()
    }


def run_quality(args: Args, method: str, equal_time_steps: int) -> dict:
    """Trains ``method``; evaluates after ``args.steps`` steps and after ``equal_time_steps`` steps."""
    trainer = _trainer(args, method, max(args.steps, equal_time_steps))
    checkpoints = {"equal_iters": args.steps, "equal_time": equal_time_steps}
    result: dict = {}
    elapsed = 0.0
    for step in range(max(checkpoints.values())):
        start = time.perf_counter()
        train_step(trainer, step)
        elapsed += time.perf_counter() - start
        for key, at in checkpoints.items():
            if step + 1 == at:
                result[key] = {"steps": at, "seconds": elapsed, **evaluate(trainer, args.test_images)}
                console.print(f"{method} after {at} steps ({key}, {elapsed:.0f} s): psnr {result[key]['psnr']:.3f}")
    return result


def write_markdown(args: Args, data: dict) -> None:
    ref = args.methods[0]
    timing, quality = data["timing"], data["quality"]
    lines = [
        f"# Mip-NeRF on Blender lego, CPU budget ({data['machine']})",
        "",
        f"Command: `{data['provenance']['command']}`. Scene {args.data.name} at scale "
        f"{args.scale} ({data['resolution']}), lite settings: {data['lite']}. Test split: first {args.test_images} "
        f"views. Speed: {args.timing_rounds} interleaved rounds of {args.timing_steps} steps (order reversed every other round); s/iter is the median round, the ratio the median of the per-round ratios. Equal time: "
        f"each method evaluated after {args.steps} / (its ratio) steps.",
        "",
        f"| method | s/iter | ratio to {ref} | PSNR @ {args.steps} it | SSIM @ {args.steps} it | dPSNR | "
        f"steps in {ref}'s time | PSNR @ equal time | SSIM @ equal time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    base = quality.get(ref, {}).get("equal_iters", {}).get("psnr")
    for m in args.methods:
        t = timing.get(m, {}).get("s_per_iter")
        q = quality.get(m, {})
        it = q.get("equal_iters", {})
        et = q.get("equal_time", {})
        ratio = f"{timing[m]['ratio']:.3f}" if m in timing else "-"
        d = f"{it['psnr'] - base:+.2f}" if it and base is not None else "-"
        fmt = lambda r, k: f"{r[k]:.3f}" if k in r else "-"  # noqa: E731
        lines.append(
            f"| {m} | {t:.3f} | {ratio} | {fmt(it, 'psnr')} | {fmt(it, 'fine_ssim')} | {d} | "
            f"{et.get('steps', '-')} | {fmt(et, 'psnr')} | {fmt(et, 'fine_ssim')} |"
        )
    others = [m for m in timing if m not in args.methods]
    if others:
        lines += [
            "",
            "Timed in the same interleaved rounds, quality not run at this budget: "
            + ", ".join(f"{m} {timing[m]['s_per_iter']:.3f} s/iter (ratio {timing[m]['ratio']:.3f})" for m in others)
            + ".",
        ]
    rounds = (
        ", ".join(f"{a / b:.2f}" for a, b in zip(timing[args.methods[1]]["rounds"], timing[ref]["rounds"]))
        if len(args.methods) > 1
        else ""
    )
    if rounds:
        lines += ["", f"Per-round ratios {args.methods[1]} / {ref}: {rounds} (this shared VM drifts by about 20%)."]
    lines += [
        "",
        "PSNR/SSIM: nerfstudio's Mip-NeRF metrics of the fine pass (`psnr`, `fine_ssim`), mean over the "
        "test views. LPIPS is not reported (its weights are not available offline).",
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(args: Args) -> None:
    torch.set_num_threads(args.threads)
    if not (args.data / "transforms_test.json").exists():
        raise SystemExit(f"no Blender scene at {args.data} (set --data or NERF_NORM_DATA)")
    from nerf_norm.method_configs.mipnerf import LITE

    path = args.out.with_suffix(".json")
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update(
        {
            "provenance": provenance({k: str(v) for k, v in vars(args).items()}),
            "machine": machine_line(provenance({})),
            "args": {k: str(v) for k, v in vars(args).items()},
            "lite": LITE,
        }
    )
    data.setdefault("quality", {})
    save = lambda: path.write_text(json.dumps(data, indent=2))  # noqa: E731
    timing = data.get("timing", {})
    if not set(args.methods) <= set(timing) or timing[args.methods[0]]["ratio"] != 1.0:  # ratios are to methods[0]
        data["timing"] = time_methods(args)
        save()
    for m in args.methods:
        if m in data["quality"]:
            continue
        data["quality"][m] = run_quality(args, m, max(1, int(args.steps / data["timing"][m]["ratio"])))
        save()
    meta = json.loads((args.data / "transforms_test.json").read_text())
    from PIL import Image

    first = args.data / (meta["frames"][0]["file_path"].replace("./", "") + ".png")
    w, h = Image.open(first).size
    data["resolution"] = f"{round(w * args.scale)}x{round(h * args.scale)} from {w}x{h}"
    save()
    write_markdown(args, data)
    console.print(f"wrote {path} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main(tyro.cli(Args))
