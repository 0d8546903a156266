"""``nerf-norm demo``: the main job. Trains nerfstudio's ``mipnerf`` and our ``mipnerf-cn`` for the same
wall-clock time on the bundled procedural Blender-format scene (generated on first use), scores both on test
views as they train, and writes one figure: ground truth | mipnerf | mipnerf-cn for two test views with their
PSNR, and both test-PSNR-over-time curves. About 8 minutes on 2 CPU cores.

``--method NAME`` instead runs one ``ns-train`` method and ``ns-eval`` (the single-method mode).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from rich.console import Console
from rich.table import Table

from .errors import UserError
from .outputs import prepare_output_dir, write_text
from .provenance import provenance

console = Console()

# torch's deprecation notice for nerfstudio's camera indexing floods the log (one line per ray batch).
_QUIET = "ignore:Using a non-tuple sequence for multidimensional indexing:UserWarning"


# The comparison's settings were chosen by trial on 2 CPU cores: with the lite preset's 128 rays of 32 + 32
# samples on the 80x80 scene, mipnerf's render after 200 s was still a grey blob; at 64x64 with 256 rays of
# 16 + 16 samples both methods show the sphere on the slab after 200 s each, and the command ends within 10
# minutes (README gives the measured run).
COMPARED = ("mipnerf", "mipnerf-cn")
VIEWS = (0, 2)


@dataclass
class DemoCommand:
    """Train nerfstudio's mipnerf and nerf_norm's mipnerf-cn for the same wall-clock time on the bundled scene and
    compare them on test views (~8 min on 2 cores); or, with --method, run one ns-train method and ns-eval.

    Comparison outputs: OUT/demo_comparison.png (ground truth | mipnerf | mipnerf-cn for two test views, and the
    test-PSNR curves), OUT/demo.json (scores and curves) and each method's nerfstudio run under OUT/runs (config.yml
    and final checkpoint, for ns-viewer / ns-eval).
    """

    out: Path = Path("outputs/demo")
    """output directory"""
    data: Optional[Path] = None
    """Blender-format scene; default: OUT/scene, generated (64x64) by `nerf-norm make-scene blender` if missing"""
    seconds: float = 200.0
    """training wall-clock per method in the comparison (evaluation time not counted)"""
    eval_every: float = 40.0
    """seconds of training between test-PSNR points of the curves"""
    rays: int = 256
    """rays per training step (both methods)"""
    samples: int = 16
    """coarse and again fine samples per ray (both methods)"""
    seed: int = 0
    method: Optional[str] = None
    """single-method mode: this ns-train method (e.g. mipnerf-cn-lite, or mipnerf-lite, nerfstudio's Mip-NeRF at
    the same CPU settings) with ns-eval"""
    steps: Optional[int] = None
    """single-method mode: training steps (default: the method's own, 600 for mipnerf-cn-lite)"""
    viewer: bool = False
    """single-method mode: serve nerfstudio's viewer while training (http://localhost:7007), quit when done"""
    overwrite: bool = False
    """start over in an --out that holds another run's outputs (they are removed first; the generated scene in
    OUT/scene is kept and reused)"""


#: what each mode writes into --out (the overwrite rule protects them)
COMPARE_OUTPUTS = ("demo.json", "demo_comparison.png", "runs")
SINGLE_OUTPUTS = ("runs", "eval.json", "renders")


def _tool(name: str) -> str:
    """The nerfstudio command installed next to this Python (the venv's), else the one on PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else name


def _run(cmd: List[str]) -> None:
    console.print(f"[dim]$ {' '.join(cmd)}[/dim]")
    env = dict(os.environ)
    env["PYTHONWARNINGS"] = ",".join(filter(None, [env.get("PYTHONWARNINGS"), _QUIET]))
    code = subprocess.call(cmd, env=env)
    if code != 0:
        raise UserError(f"{Path(cmd[0]).name} failed with exit code {code} (see its output above)")


def _scene(cmd: DemoCommand, out: Path) -> Path:
    from .nerfstudio.blender_dataparser import check_blender_split
    from .scenes.blender import BlenderSceneConfig, write_blender_scene

    data = (cmd.data or out / "scene").resolve()
    if cmd.data is None and not (data / "transforms_train.json").exists():
        console.print(f"generating the default scene in {data}")
        # the demo's own folder: a partial scene from an interrupted run is replaced
        write_blender_scene(data, BlenderSceneConfig(resolution=64), overwrite=True)
    for split in ("train", "test"):
        check_blender_split(data, split)
    return data


def run_demo(cmd: DemoCommand) -> Path:
    """Runs the comparison (default) or the single-method mode; returns the figure's or ns-eval's JSON path."""
    out = cmd.out.resolve()
    if cmd.method is None:
        for name, value in (("--seconds", cmd.seconds), ("--eval-every", cmd.eval_every)):
            if not value > 0:
                raise UserError(f"{name} must be positive, got {value}")
        for name, value in (("--rays", cmd.rays), ("--samples", cmd.samples)):
            if value < 1:
                raise UserError(f"{name} must be >= 1, got {value}")
        if cmd.steps is not None or cmd.viewer:
            raise UserError("--steps and --viewer belong to the single-method mode: give --method too")
        prepare_output_dir(out, COMPARE_OUTPUTS, cmd.overwrite, command="nerf-norm demo")
        return _compare(cmd, out, _scene(cmd, out))
    if cmd.steps is not None and cmd.steps < 1:
        raise UserError(f"--steps must be >= 1, got {cmd.steps}")
    prepare_output_dir(out, SINGLE_OUTPUTS, cmd.overwrite, command="nerf-norm demo --method")
    return _single_method(cmd, out, _scene(cmd, out))


def _compare(cmd: DemoCommand, out: Path, data: Path) -> Path:
    import torch

    from .nerfstudio.demo_compare import CompareSettings, compare, write_figure

    torch.set_num_threads(os.cpu_count() or 1)
    # the same two notices _run silences in ns-train: torch's on nerfstudio's camera indexing (one per ray batch)
    # and torchmetrics' on an import path nerfstudio uses
    warnings.filterwarnings("ignore", message="Using a non-tuple sequence for multidimensional indexing")
    warnings.filterwarnings("ignore", category=FutureWarning, module="torchmetrics")
    # the bundled scene's test views 0 and 2 (two different sides); a user's scene with fewer test views: its first
    test_views = len(json.loads((data / "transforms_test.json").read_text())["frames"])
    views = VIEWS if test_views > max(VIEWS) else tuple(range(min(len(VIEWS), test_views)))
    settings = CompareSettings(
        data=data,
        out=out / "runs",
        seconds=cmd.seconds,
        eval_every=cmd.eval_every,
        rays=cmd.rays,
        samples=cmd.samples,
        seed=cmd.seed,
        views=views,
    )
    start = time.perf_counter()
    results = compare(COMPARED, settings)
    figure = write_figure(results, out / "demo_comparison.png", settings)
    record = {
        "provenance": provenance(settings.describe(), program="nerf-norm"),
        "settings": settings.describe(),
        "wall_seconds": time.perf_counter() - start,
        "methods": {name: r.summary() for name, r in results.items()},
    }
    write_text(out / "demo.json", json.dumps(record, indent=2))
    table = Table(title=f"mipnerf vs mipnerf-cn, {cmd.seconds:.0f} s of training each (test views {list(views)})")
    for column in ("method", "steps", "PSNR (dB)", "SSIM"):
        table.add_column(column)
    for name, r in results.items():
        table.add_row(name, str(r.steps), f"{r.psnr:.2f}", f"{r.ssim:.3f}")
    console.print(table)
    console.print(f"figure: {figure}")
    console.print(f"scores and curves: {out / 'demo.json'}")
    return figure


def _single_method(cmd: DemoCommand, out: Path, data: Path) -> Path:
    stamp = time.strftime("%Y-%m-%d_%H%M%S")
    train = [
        _tool("ns-train"),
        cmd.method,
        "--data",
        str(data),
        "--output-dir",
        str(out / "runs"),
        "--experiment-name",
        "demo",
        "--timestamp",
        stamp,
        "--machine.device-type",
        "cpu",
        "--vis",
        "viewer" if cmd.viewer else "tensorboard",
        "--viewer.quit-on-train-completion",
        "True",
    ]
    if cmd.steps is not None:
        train += ["--max-num-iterations", str(cmd.steps)]
    _run(train)
    config = out / "runs" / "demo" / cmd.method / stamp / "config.yml"
    if not config.exists():
        raise UserError(f"ns-train finished but {config} is missing")
    metrics, renders = out / "eval.json", out / "renders"
    _run(
        [
            _tool("ns-eval"),
            "--load-config",
            str(config),
            "--output-path",
            str(metrics),
            "--render-output-path",
            str(renders),
        ]
    )
    results = json.loads(metrics.read_text())["results"]
    table = Table(title=f"{cmd.method} on {data.name} (test split, ns-eval)", show_header=False)
    for key, value in results.items():
        if not key.endswith("_std"):
            table.add_row(key, f"{value:.4f} ± {results.get(key + '_std', 0.0):.4f}")
    table.add_row("config", str(config))
    table.add_row("metrics", str(metrics))
    table.add_row("renders", str(renders))
    console.print(table)
    return metrics
