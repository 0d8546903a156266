"""Cost of one training step of a normalized method relative to its plain counterpart, measured in the same run.

Three pairs (issue 13's targets in brackets):

- ``neus``: ``neus-cn-lite`` against the same configuration with ``sdf_field.norm none`` (nerfstudio's NeuS SDF
  field computation without norms) on a generated bunny scene (``make-scene dtu``, 64x48, 16 views) [<= 1.3x];
  also the plain field with neus-cn's kernel softplus (``nerf_norm/nerfstudio/softplus.py``), so that CN's own
  cost shows apart from the activation's;
- ``mipnerf``: ``mipnerf-gn-lite`` and ``mipnerf-cn-lite`` against nerfstudio's ``mipnerf`` with the same lite
  settings, on a generated Blender scene (``make-scene blender``, 100x100) [gn <= 1.15x];
- ``image``: ``relu+cn`` against ``relu`` at 10x28 on the bundled image at 256x256 (T = 65,536 pixels, full
  batch), one Adam iteration as ``nerf-norm image`` takes it (forward, MSE, backward, step, best-PSNR tracking),
  with the trainer's malloc setting (``nerf_norm/cpu_memory.py``; ``--no-retain-freed-memory``: glibc's
  defaults; process-wide from the image pair on, which is why it runs last) [<= 1.5x].

The nerfstudio pairs are timed by nerfstudio's own profiler (``--logging.profiler basic``: the running mean of
``Trainer.train_iteration``), reset before each block. Methods run in interleaved rounds (order reversed every
other round, one untimed step first), and a ratio is the median of the per-round ratios, so slow drift of a
shared machine cancels. Each block also counts the process's minor page faults (``getrusage``). Results:
``benchmarks/results/step_cost.{json,md}``.

    .venv/bin/python benchmarks/step_cost.py                 # all three pairs
    .venv/bin/python benchmarks/step_cost.py --pairs neus    # one pair (merged into the existing results)
"""

from __future__ import annotations

import json
import resource
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import torch
import tyro
from provenance import machine_line, provenance
from rich.console import Console

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SCRATCH = HERE / "scratch" / "step_cost"
console = Console()

TARGETS = {("neus", "neus-cn"): 1.3, ("mipnerf", "mipnerf-gn"): 1.15, ("image", "relu+cn"): 1.5}


@dataclass
class Args:
    pairs: Tuple[str, ...] = ("neus", "mipnerf", "image")
    rounds: int = 5
    """interleaved timing rounds per pair"""
    steps: int = 10
    """timed steps per method and round"""
    threads: int = 2
    retain_freed_memory: bool = True
    """the image pair with ``nerf-norm``'s malloc setting (nerf_norm/cpu_memory.py), as its trainer runs"""
    out: Path = RESULTS / "step_cost"


StepFn = Callable[[], None]


def interleave(steppers: Dict[str, Tuple[StepFn, Callable[[], float]]], rounds: int, steps: int) -> Dict[str, dict]:
    """``steppers[name] = (step, block_seconds)``: ``block_seconds()`` is the mean step time of the block just
    run. Returns per method the per-round times, the median and the median ratio to the first method, and the
    median number of minor page faults per step."""
    names = list(steppers)
    times: Dict[str, List[float]] = {n: [] for n in names}
    faults: Dict[str, List[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            step, block_seconds = steppers[name]
            step()  # untimed: the previous block was another method's
            block_seconds.reset()  # type: ignore[attr-defined]
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for _ in range(steps):
                step()
            times[name].append(block_seconds())
            faults[name].append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / steps)
        console.print(f"round {r}: " + ", ".join(f"{n} {v[-1]:.4f} s" for n, v in times.items()))
    ref = times[names[0]]
    return {
        n: {
            "s_per_step": statistics.median(v),
            "ratio": statistics.median(a / b for a, b in zip(v, ref)),
            "rounds": v,
            "page_faults_per_step": statistics.median(faults[n]),
        }
        for n, v in times.items()
    }


class _ProfiledStep:
    """A nerfstudio trainer stepped as ``Trainer.train`` does; time from nerfstudio's profiler."""

    def __init__(self, trainer) -> None:
        from nerfstudio.utils import profiler

        self.trainer, self.profiler, self.k = trainer, profiler, 0

    def step(self) -> None:
        from nerf_norm.nerfstudio.experiment import train_step

        train_step(self.trainer, self.k)
        self.k += 1

    def reset(self) -> None:
        self.profiler.PROFILER[0].profiler_dict.clear()

    def __call__(self) -> float:
        return self.profiler.PROFILER[0].profiler_dict["Trainer.train_iteration"]["val"]


class _WallClock:
    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.count = 0

    def reset(self) -> None:
        self.start, self.count = time.perf_counter(), 0

    def tick(self) -> None:
        self.count += 1

    def __call__(self) -> float:
        return (time.perf_counter() - self.start) / max(self.count, 1)


def _nerfstudio_trainer(config, scene: Path, out: Path):
    from nerf_norm.nerfstudio.experiment import RunSettings, configure, setup_trainer

    config = configure(config, RunSettings(scene, out, steps=10**6))
    config.logging.profiler = "basic"
    return setup_trainer(config)


def neus_pair(args: Args) -> Dict[str, dict]:
    from nerf_norm.nerfstudio.experiment import method_config
    from nerf_norm.scenes.dtu import DTUSceneConfig, write_dtu_scene

    scene = SCRATCH / "dtu_scene"
    if not (scene / "cameras_sphere.npz").exists():
        write_dtu_scene(scene, None, DTUSceneConfig(width=64, height=48, views=16), overwrite=True)
    from nerf_norm.nerfstudio.softplus import BoundedSoftplus

    steppers = {}
    for name, norm in (("neus", "none"), ("neus-cn", "cn"), ("neus, kernel softplus", "none")):
        config = method_config("neus-cn-lite")
        config.pipeline.model.sdf_field.norm = norm
        trainer = _nerfstudio_trainer(config, scene, SCRATCH / f"neus_{len(steppers)}")
        if name.endswith("kernel softplus"):  # the plain field with the activation neus-cn uses: CN's own cost
            field = trainer.pipeline.model.field
            field.softplus = BoundedSoftplus(beta=field.softplus.beta, threshold=field.softplus.threshold)
        timed = _ProfiledStep(trainer)
        steppers[name] = (timed.step, timed)
    return interleave(steppers, args.rounds, args.steps)


def mipnerf_pair(args: Args) -> Dict[str, dict]:
    from nerf_norm.nerfstudio.experiment import lite_config
    from nerf_norm.scenes.blender import BlenderSceneConfig, write_blender_scene

    scene = SCRATCH / "blender_scene"
    if not (scene / "transforms_train.json").exists():
        write_blender_scene(scene, BlenderSceneConfig(resolution=100), overwrite=True)
    steppers = {}
    for name in ("mipnerf", "mipnerf-gn", "mipnerf-cn"):
        timed = _ProfiledStep(_nerfstudio_trainer(lite_config(name), scene, SCRATCH / name))
        steppers[name] = (timed.step, timed)
    return interleave(steppers, args.rounds, args.steps)


def image_pair(args: Args) -> Dict[str, dict]:
    from nerf_norm.cpu_memory import retain_freed_memory
    from nerf_norm.networks import build_network
    from nerf_norm.tasks.image import ImageTask

    if args.retain_freed_memory and not retain_freed_memory():
        console.print("image: the malloc setting is unavailable here (not glibc); glibc's defaults apply")
    task = ImageTask(None, downscale=2)
    coords = task.coords()
    steppers = {}
    for name in ("relu", "relu+cn"):
        torch.manual_seed(0)
        model = build_network(name, task.in_dim, task.out_dim, "10x28").train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        clock = _WallClock()

        def step(model=model, opt=opt, clock=clock) -> None:
            opt.zero_grad(set_to_none=True)
            pred = model(coords)
            loss = task.loss(pred)
            loss.backward()
            opt.step()
            task.progress(pred.detach())
            clock.tick()

        steppers[name] = (step, clock)
    console.print(f"image: {task.describe()}")
    return interleave(steppers, args.rounds, args.steps)


PAIRS = {"neus": neus_pair, "mipnerf": mipnerf_pair, "image": image_pair}


def write_markdown(record: dict, out: Path) -> None:
    lines = [
        "# Step cost of the normalized methods (issue 13, item 4)",
        "",
        f"- command: `{record['command']}`",
        f"- machine: {record['machine']}",
        f"- date: {record['date']}",
        "- nerfstudio pairs: mean `Trainer.train_iteration` from nerfstudio's basic profiler per block; image: "
        "wall clock of the iteration; ratio = median over rounds of the paired per-round ratio",
        "",
    ]
    lines += [
        "| pair | method | s / step | x plain | target | met | page faults / step |",
        "|---|---|---:|---:|---:|---|---:|",
    ]
    for pair, methods in record["pairs"].items():
        for method, r in methods.items():
            target = TARGETS.get((pair, method))
            met = "" if target is None else ("yes" if r["ratio"] <= target else "**no**")
            pf = r.get("page_faults_per_step")
            lines.append(
                f"| {pair} | {method} | {r['s_per_step']:.4f} | {r['ratio']:.3f} | "
                f"{'' if target is None else f'<= {target}'} | {met} | {'-' if pf is None else f'{pf:.0f}'} |"
            )
    lines += ["", "Settings: " + "; ".join(f"{k}: {v}" for k, v in record["settings"].items())]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    console.print(f"wrote {out.with_suffix('.md')}")


def main(args: Args) -> None:
    from nerf_norm import kernels as cn_kernel

    torch.set_num_threads(args.threads)
    cn_kernel.load()
    path = args.out.with_suffix(".json")
    record = json.loads(path.read_text()) if path.exists() else {"pairs": {}}
    for pair in args.pairs:
        if pair not in PAIRS:
            raise SystemExit(f"--pairs: unknown pair {pair!r}; choose from {', '.join(PAIRS)}")
        record["pairs"][pair] = PAIRS[pair](args)
        meta = provenance({k: str(v) for k, v in vars(args).items()})
        record.update(
            provenance=meta,
            command=meta["command"],
            machine=machine_line(meta),
            date=meta["date"],
            settings={
                "rounds": args.rounds,
                "steps per block": args.steps,
                "neus": "neus-cn-lite (128 rays, 32+32 samples, 6x128 SDF, 2x128 colour) vs norm none, "
                "generated bunny 64x48",
                "mipnerf": "lite settings (128 rays, 32+32 samples), generated Blender scene 100x100",
                "image": "10x28, bundled image 256x256, full batch, Adam, malloc "
                + ("retained (nerf_norm/cpu_memory.py)" if args.retain_freed_memory else "glibc defaults"),
            },
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=1))
        write_markdown(record, args.out)


if __name__ == "__main__":
    main(tyro.cli(Args))
