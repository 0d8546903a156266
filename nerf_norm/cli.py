"""The ``nerf-norm`` command: one subcommand per task, configured by dataclasses through tyro."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Optional

import tyro
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .analysis.commands import NTKCommand, SpectralDynamicsCommand, run_ntk, run_spectral_dynamics
from .demo import DemoCommand, run_demo
from .errors import UserError, os_error_message
from .nerfstudio.extract_mesh import ExtractMeshCommand
from .process import configure_process
from .scenes.blender import BlenderSceneConfig
from .scenes.dtu import DTUSceneConfig
from .sweep import SweepCommand
from .tasks.base import Terminated
from .tasks.commands import (
    CTCommand,
    ImageCommand,
    MRICommand,
    OccupancyCommand,
    run_ct,
    run_image,
    run_mri,
    run_occupancy,
)

console = Console()


def _print_summary(title: str, metrics: Dict[str, float], outputs: Dict[str, Path], out: Path) -> None:
    table = Table(title=title, show_header=False)
    for key in (
        "psnr",
        "ssim",
        "iou",
        "fbp_psnr",
        "fbp_ssim",
        "zero_filled_psnr",
        "zero_filled_ssim",
        "params",
        "bpp_half",
        "bpp_full",
        "iterations",
        "train_seconds",
    ):
        if key in metrics:
            value = metrics[key]
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    for key, path in outputs.items():
        table.add_row(key, str(path))
    console.print(table)
    console.print(f"outputs in [bold]{out.resolve()}[/bold]")


def _fit(cmd, run):
    """A fitting command as an entry point: its process-wide settings, then the library's run."""
    cmd.validate()
    configure_process(cmd.threads, cmd.retain_freed_memory)
    return run(cmd)


def _image(cmd: ImageCommand) -> None:
    result, task = _fit(cmd, run_image)
    _print_summary(
        f"{cmd.method} {cmd.arch} on {task.source} ({task.width}x{task.height})",
        result.metrics,
        result.outputs,
        cmd.out,
    )


def _occupancy(cmd: OccupancyCommand) -> None:
    result, task = _fit(cmd, run_occupancy)
    closed = "" if task.closed else ", not closed: holes filled by the winding number"
    _print_summary(
        f"{cmd.method} {cmd.arch} occupancy of {task.source} ({task.resolution}^3{closed})",
        result.metrics,
        result.outputs,
        cmd.out,
    )


def _ct(cmd: CTCommand) -> None:
    result, task = _fit(cmd, run_ct)
    _print_summary(
        f"{cmd.method} {cmd.arch} CT of {task.source} ({task.size}x{task.size}, {task.projections} projections)",
        result.metrics,
        result.outputs,
        cmd.out,
    )


def _mri(cmd: MRICommand) -> None:
    result, task = _fit(cmd, run_mri)
    _print_summary(
        f"{cmd.method} {cmd.arch} MRI of {task.source} ({task.size_label}, "
        f"{100 * task.measured_fraction:.1f}% of k-space)",
        result.metrics,
        result.outputs,
        cmd.out,
    )


@dataclass
class MakeBlenderScene:
    """Render the procedural default scene (textured spheres on a checkered slab) as a Blender-format dataset:
    transforms_{train,val,test}.json (camera_angle_x, OpenGL camera-to-world matrices) and RGBA PNGs."""

    out: Path = Path("data/nerf_norm_scene")
    """output directory"""
    overwrite: bool = False
    """replace a scene already in --out (its files are removed first; nothing else in --out is touched)"""
    scene: BlenderSceneConfig = field(default_factory=BlenderSceneConfig)


def _render_scene(writer, cmd, written: str) -> None:
    """Renders the procedural scene with ``writer`` (one of :mod:`nerf_norm.scenes`' writers) under a progress bar."""
    with _progress() as progress:
        task = progress.add_task("rendering views", total=None)
        writer(
            cmd.out,
            cmd.scene,
            lambda done, total: progress.update(task, completed=done, total=total),
            overwrite=cmd.overwrite,
        )
    console.print(f"{written} written to [bold]{cmd.out.resolve()}[/bold]")


def _make_blender_scene(cmd: MakeBlenderScene) -> None:
    from .scenes.blender import write_blender_scene

    _render_scene(write_blender_scene, cmd, "Blender-format scene")


@dataclass
class MakeNerfstudioScene:
    """Render the procedural default scene in nerfstudio's data format, as ns-process-data leaves a capture:
    transforms.json (OPENCV pinhole intrinsics, OpenGL camera-to-world matrices, train/val/test file lists) and RGB
    images on a white background. Train on it with the nerfstudio-data dataparser (docs: methods pages)."""

    out: Path = Path("data/nerf_norm_nerfstudio_scene")
    """output directory"""
    overwrite: bool = False
    """replace a scene already in --out (its files are removed first; nothing else in --out is touched)"""
    scene: BlenderSceneConfig = field(default_factory=BlenderSceneConfig)


def _make_nerfstudio_scene(cmd: MakeNerfstudioScene) -> None:
    from .scenes.nerfstudio import write_nerfstudio_scene

    _render_scene(write_nerfstudio_scene, cmd, "nerfstudio-format scene")


@dataclass
class MakeDTUScene:
    """Render a mesh into the NeuS / IDR layout (image/, mask/, cameras_sphere.npz) with a known world scale, plus
    mesh_world.ply as the ground truth: the whole train -> extract-mesh -> eval-dtu loop with a known answer."""

    out: Path = Path("data/nerf_norm_dtu_scene")
    """output directory"""
    mesh: Optional[Path] = None
    """mesh to render (OBJ/PLY/...); default: pymeshlab's sample bunny; real: ../shared/data/meshes/*"""
    overwrite: bool = False
    """replace a scene already in --out (its files are removed first; nothing else in --out is touched)"""
    scene: DTUSceneConfig = field(default_factory=DTUSceneConfig)


def _make_dtu_scene(cmd: MakeDTUScene) -> None:
    from .scenes.dtu import write_dtu_scene

    with _progress() as progress:
        task = progress.add_task("rendering views", total=cmd.scene.views)
        write_dtu_scene(
            cmd.out,
            cmd.mesh,
            cmd.scene,
            lambda done, total: progress.update(task, completed=done),
            overwrite=cmd.overwrite,
        )
    console.print(f"NeuS-layout scene written to [bold]{cmd.out.resolve()}[/bold] (ground truth: mesh_world.ply)")


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


@dataclass
class EvalDTUCommand:
    """Score a mesh with the DTU chamfer protocol (accuracy, completeness, overall in mm; see nerf_norm.dtu_eval).

    Needs the official evaluation files under --dataset-dir: Points/stl/stl{scan:03}_total.ply,
    ObsMask/ObsMask{scan}_10.mat and ObsMask/Plane{scan}.mat. The mesh must be in DTU world coordinates (mm),
    i.e. with the NeuS scale matrix undone. Writes the JSON given by --out.
    """

    mesh: Path
    """mesh to evaluate (PLY, OBJ, ...)"""
    scan: int
    """DTU scan id, e.g. 65"""
    dataset_dir: Path
    """folder with the official Points/ and ObsMask/ folders"""
    out: Path
    """JSON with accuracy, completeness, overall (mm)"""
    overwrite: bool = False
    """replace --out (and the error PLYs) when they exist"""
    density: float = 0.2
    """mesh sampling and downsampling distance (mm)"""
    max_dist: float = 20.0
    """distances at or above this (mm) are left out of both means"""
    seed: int = 0
    """seed of the random visiting order of the downsampling"""
    visualize: bool = False
    """also write OUT_accuracy.ply / OUT_completeness.ply: points coloured by their distance (0-10 mm)"""
    cull_cameras: Optional[Path] = None
    """cameras_sphere.npz of the views, to cull the mesh by the dilated view masks first (NeuS clean-mesh step)"""
    cull_masks: Optional[Path] = None
    """the views' mask folder, with --cull-cameras"""
    dilation: int = 12
    """mask dilation in pixels for the culling"""


def _eval_dtu(cmd: EvalDTUCommand) -> None:
    from .dtu_eval import run_evaluation

    result = run_evaluation(
        cmd.mesh,
        cmd.scan,
        cmd.dataset_dir,
        cmd.out,
        overwrite=cmd.overwrite,
        density=cmd.density,
        max_dist=cmd.max_dist,
        seed=cmd.seed,
        visualize=cmd.visualize,
        cull_cameras=cmd.cull_cameras,
        cull_masks=cmd.cull_masks,
        dilation=cmd.dilation,
    )
    table = Table(title=f"DTU scan {cmd.scan}: {cmd.mesh.name}")
    for col in ("accuracy (mm)", "completeness (mm)", "overall (mm)", "mesh points", "seconds"):
        table.add_column(col, justify="right")
    table.add_row(
        f"{result.accuracy:.4f}",
        f"{result.completeness:.4f}",
        f"{result.overall:.4f}",
        str(result.mesh_points),
        f"{result.seconds:.1f}",
    )
    console.print(table)
    console.print(f"written to [bold]{cmd.out}[/bold]")


def _extract_mesh(cmd) -> None:
    from .nerfstudio.extract_mesh import run_extract_mesh

    with _progress() as progress:
        task = progress.add_task("marching cubes (blocks)", total=None)
        out = run_extract_mesh(cmd, lambda done, total: progress.update(task, completed=done, total=total))
    import trimesh

    mesh = trimesh.load(str(out), process=False)
    console.print(
        f"mesh with {len(mesh.vertices):,} vertices and {len(mesh.faces):,} faces written to "
        f"[bold]{out}[/bold]" + ("" if mesh.is_watertight else " (not watertight)")
    )


@dataclass
class MakeSceneGroup:
    """Generate a dataset with known ground truth: `nerf-norm make-scene {blender,nerfstudio,dtu} --out DIR`."""


# Every command: its config class (its docstring is its help) and how it parses its arguments into
# ``(config, handler)``: one table, one dispatch path (:func:`main`).
Parser = Callable[[list, str], tuple]


def _single(cls, handler) -> Parser:
    """A command configured by one dataclass."""
    return lambda argv, prog: (tyro.cli(cls, args=argv, prog=prog, description=cls.__doc__), handler)


def _group(commands: Dict[str, tuple], doc: str) -> Parser:
    """A command with sub-commands (``nerf-norm make-scene {blender,nerfstudio,dtu}``)."""

    def parse(argv, prog):
        config = tyro.extras.subcommand_cli_from_dict(
            {name: cls for name, (cls, _) in commands.items()}, prog=prog, description=doc, args=argv
        )
        return config, next(fn for cls, fn in commands.values() if isinstance(config, cls))

    return parse


def _sweep(argv, prog):
    """``nerf-norm sweep [SWEEP OPTIONS] [-- TASK OPTIONS]``: the task's own options go after ``--``."""
    from .sweep import run_sweep

    cut = argv.index("--") if "--" in argv else len(argv)
    config = tyro.cli(SweepCommand, args=argv[:cut], prog=prog, description=SweepCommand.__doc__)
    return config, lambda cmd: run_sweep(cmd, argv[cut + 1 :])


COMMANDS: Dict[str, tuple] = {
    "image": (ImageCommand, _single(ImageCommand, _image)),
    "occupancy": (OccupancyCommand, _single(OccupancyCommand, _occupancy)),
    "ct": (CTCommand, _single(CTCommand, _ct)),
    "mri": (MRICommand, _single(MRICommand, _mri)),
    "demo": (DemoCommand, _single(DemoCommand, run_demo)),
    "make-scene": (
        MakeSceneGroup,
        _group(
            {
                "blender": (MakeBlenderScene, _make_blender_scene),
                "nerfstudio": (MakeNerfstudioScene, _make_nerfstudio_scene),
                "dtu": (MakeDTUScene, _make_dtu_scene),
            },
            MakeSceneGroup.__doc__,
        ),
    ),
    "eval-dtu": (EvalDTUCommand, _single(EvalDTUCommand, _eval_dtu)),
    "extract-mesh": (ExtractMeshCommand, _single(ExtractMeshCommand, _extract_mesh)),
    "ntk": (NTKCommand, _single(NTKCommand, run_ntk)),
    "spectral-dynamics": (SpectralDynamicsCommand, _single(SpectralDynamicsCommand, run_spectral_dynamics)),
    "sweep": (SweepCommand, _sweep),
}
DESCRIPTION = "Normalization-based coordinate networks: fit signals with BN/LN/GN/CN MLPs and baselines."


def _parse(argv: list):
    """``(config, handler)`` of the command ``argv`` names; without one (``--help``, a typo), tyro's listing of
    every command answers."""
    if argv and argv[0] in COMMANDS:
        return COMMANDS[argv[0]][1](argv[1:], f"nerf-norm {argv[0]}")
    tyro.extras.subcommand_cli_from_dict(
        {name: cls for name, (cls, _) in COMMANDS.items()}, prog="nerf-norm", description=DESCRIPTION, args=argv
    )
    raise SystemExit(2)  # tyro exits itself for --help and for an unknown command; a bare group lands here


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    config, handler = _parse(argv)
    try:
        handler(config)
    except UserError as exc:
        return _error(str(exc), exc.exit_code)
    except OSError as exc:  # a file operation the checks could not foresee (a disk filling up, a file removed)
        return _error(os_error_message(exc), 2)
    except KeyboardInterrupt as exc:
        console.print("terminated" if isinstance(exc, Terminated) else "interrupted")
        return 143 if isinstance(exc, Terminated) else 130
    return 0


def _error(message: str, code: int) -> int:
    console.print(f"[bold red]error:[/bold red] {escape(message)}", soft_wrap=True)
    return code


def entrypoint() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
