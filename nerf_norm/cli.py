"""The ``nerf-norm`` command: one subcommand per task, configured by dataclasses through tyro."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Literal, Optional

import tyro
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .errors import UserError
from .networks import build_network, get_method, parse_arch
from .analysis.commands import NTKCommand, SpectralDynamicsCommand, run_ntk, run_spectral_dynamics
from .demo import DemoCommand, run_demo
from .nerfstudio.extract_mesh import ExtractMeshCommand
from .norms import CN_VARIANTS
from .scenes.blender import BlenderSceneConfig
from .scenes.dtu import DTUSceneConfig
from .tasks.base import FitResult, TrainConfig, Trainer

console = Console()


@dataclass
class ImageCommand(TrainConfig):
    """Fit an image with a coordinate network (paper section 5.1): full batch, MSE, Adam.

    Writes OUT/reconstruction.png, OUT/spectrum.png (Fourier spectra of target and reconstruction),
    OUT/curve.png, OUT/metrics.json (PSNR, SSIM, parameters, bpp) and OUT/checkpoint.pt (resumable).
    """

    image: Optional[Path] = None
    """image file (PNG, JPEG, TIFF, ...); default: scikit-image's bundled astronaut photograph"""
    method: str = "pe+cn"
    """one of: siren, mfn, wire, relu, relu+bn, relu+ln, relu+gn, relu+cn, pe, pe+bn, pe+ln, pe+gn, pe+cn"""
    arch: str = "10x28"
    """hidden layers x hidden features, e.g. 5x20, 10x28, 13x49"""
    downscale: int = 4
    """integer downscaling of the image before fitting (1 = full resolution)"""
    out: Path = Path("outputs/image")
    """output directory"""
    iters: int = 500
    """training iterations (full batch each)"""
    cn_variant: Literal["paper", "reference"] = "paper"
    """CrossNorm formulation (see README: 'Which CrossNorm')"""

    def validate(self) -> None:
        super().validate()
        try:
            get_method(self.method)
            parse_arch(self.arch)
        except ValueError as exc:
            raise UserError(str(exc)) from exc
        if self.cn_variant not in CN_VARIANTS:
            raise UserError(f"--cn-variant must be one of {CN_VARIANTS}, got {self.cn_variant!r}")


def _train_config(cmd: TrainConfig) -> TrainConfig:
    return TrainConfig(**{f: getattr(cmd, f) for f in TrainConfig.__dataclass_fields__})


def run_image(cmd: ImageCommand) -> tuple[FitResult, "ImageTask"]:  # noqa: F821
    """Runs the image task for ``cmd``; returns the fit and the task (its source and size)."""
    from .tasks.image import ImageTask

    cmd.validate()
    task = ImageTask(cmd.image, cmd.downscale)
    spec = get_method(cmd.method)
    info = {"method": spec.name, "arch": cmd.arch, "cn_variant": cmd.cn_variant}
    trainer = Trainer(_train_config(cmd), cmd.out, info)

    def build():
        return build_network(spec.name, task.in_dim, task.out_dim, cmd.arch, seed=cmd.seed,
                             norm_kwargs={"variant": cmd.cn_variant} if spec.norm == "cn" else None)

    return trainer.fit(task, build, spec.default_lr), task


def _print_summary(title: str, metrics: Dict[str, float], outputs: Dict[str, Path]) -> None:
    table = Table(title=title, show_header=False)
    for key in ("psnr", "ssim", "params", "bpp_half", "bpp_full", "iterations", "train_seconds"):
        if key in metrics:
            value = metrics[key]
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    for key, path in outputs.items():
        table.add_row(key, str(path))
    console.print(table)


def _image(cmd: ImageCommand) -> None:
    result, task = run_image(cmd)
    _print_summary(f"{cmd.method} {cmd.arch} on {task.source} ({task.width}x{task.height})", result.metrics,
                   result.outputs)
    console.print(f"outputs in [bold]{cmd.out.resolve()}[/bold]")


@dataclass
class MakeBlenderScene:
    """Render the procedural default scene (textured spheres on a checkered slab) as a Blender-format dataset:
    transforms_{train,val,test}.json (camera_angle_x, OpenGL camera-to-world matrices) and RGBA PNGs."""

    out: Path = Path("data/nerf_norm_scene")
    """output directory"""
    scene: BlenderSceneConfig = field(default_factory=BlenderSceneConfig)


def _make_blender_scene(cmd: MakeBlenderScene) -> None:
    from .scenes.blender import write_blender_scene

    with _progress() as progress:
        task = progress.add_task("rendering views", total=None)
        write_blender_scene(cmd.out, cmd.scene, lambda done, total: progress.update(task, completed=done, total=total))
    console.print(f"Blender-format scene written to [bold]{cmd.out.resolve()}[/bold]")


@dataclass
class MakeDTUScene:
    """Render a mesh into the NeuS / IDR layout (image/, mask/, cameras_sphere.npz) with a known world scale, plus
    mesh_world.ply as the ground truth: the whole train -> extract-mesh -> eval-dtu loop with a known answer."""

    out: Path = Path("data/nerf_norm_dtu_scene")
    """output directory"""
    mesh: Optional[Path] = None
    """mesh to render (OBJ/PLY/...); default: pymeshlab's sample bunny; real: ../shared/data/meshes/*"""
    overwrite: bool = False
    """replace a scene already in --out"""
    scene: DTUSceneConfig = field(default_factory=DTUSceneConfig)


def _make_dtu_scene(cmd: MakeDTUScene) -> None:
    from .scenes.dtu import write_dtu_scene

    with _progress() as progress:
        task = progress.add_task("rendering views", total=cmd.scene.views)
        write_dtu_scene(cmd.out, cmd.mesh, cmd.scene, lambda done, total: progress.update(task, completed=done),
                        overwrite=cmd.overwrite)
    console.print(f"NeuS-layout scene written to [bold]{cmd.out.resolve()}[/bold] (ground truth: mesh_world.ply)")


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True)


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

    result = run_evaluation(cmd.mesh, cmd.scan, cmd.dataset_dir, cmd.out, overwrite=cmd.overwrite,
                            density=cmd.density, max_dist=cmd.max_dist, seed=cmd.seed, visualize=cmd.visualize,
                            cull_cameras=cmd.cull_cameras, cull_masks=cmd.cull_masks, dilation=cmd.dilation)
    table = Table(title=f"DTU scan {cmd.scan}: {cmd.mesh.name}")
    for col in ("accuracy (mm)", "completeness (mm)", "overall (mm)", "mesh points", "seconds"):
        table.add_column(col, justify="right")
    table.add_row(f"{result.accuracy:.4f}", f"{result.completeness:.4f}", f"{result.overall:.4f}",
                  str(result.mesh_points), f"{result.seconds:.1f}")
    console.print(table)
    console.print(f"written to [bold]{cmd.out}[/bold]")


def _extract_mesh(cmd) -> None:
    from .nerfstudio.extract_mesh import run_extract_mesh

    with _progress() as progress:
        task = progress.add_task("marching cubes (blocks)", total=None)
        out = run_extract_mesh(cmd, lambda done, total: progress.update(task, completed=done, total=total))
    import trimesh

    mesh = trimesh.load(str(out), process=False)
    console.print(f"mesh with {len(mesh.vertices):,} vertices and {len(mesh.faces):,} faces written to "
                  f"[bold]{out}[/bold]" + ("" if mesh.is_watertight else " (not watertight)"))


@dataclass
class MakeSceneGroup:
    """Generate a dataset with known ground truth: `nerf-norm make-scene {blender,dtu} --out DIR`."""


# A group maps sub-subcommand names to (config class, handler); `nerf-norm GROUP NAME ...`.
GROUPS = {"make-scene": {"blender": (MakeBlenderScene, _make_blender_scene), "dtu": (MakeDTUScene, _make_dtu_scene)}}

COMMANDS = {
    "image": (ImageCommand, _image),
    "demo": (DemoCommand, run_demo),
    "make-scene": (MakeSceneGroup, None),
    "eval-dtu": (EvalDTUCommand, _eval_dtu),
    "extract-mesh": (ExtractMeshCommand, _extract_mesh),
    "ntk": (NTKCommand, run_ntk),
    "spectral-dynamics": (SpectralDynamicsCommand, run_spectral_dynamics),
}


def _parse(commands, prog: str, description: str, argv):
    config = tyro.extras.subcommand_cli_from_dict(
        {name: cls for name, (cls, _) in commands.items()}, prog=prog, description=description, args=argv
    )
    return config, next(fn for cls, fn in commands.values() if isinstance(config, cls))


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in GROUPS:
        config, handler = _parse(GROUPS[argv[0]], f"nerf-norm {argv[0]}", COMMANDS[argv[0]][0].__doc__, argv[1:])
    else:
        config, handler = _parse(
            COMMANDS, "nerf-norm",
            "Normalization-based coordinate networks: fit signals with BN/LN/GN/CN MLPs and baselines.", argv)
    try:
        handler(config)
    except UserError as exc:
        console.print(f"[bold red]error:[/bold red] {escape(str(exc))}", soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        console.print("interrupted; the last checkpoint is kept (run again to resume)")
        return 130
    return 0


def entrypoint() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
