"""``nerf-norm extract-mesh``: the zero level set of a trained NeuS-style model as a mesh, on CPU or GPU.

nerfstudio's ``ns-export marching-cubes`` moves tensors to CUDA unconditionally. This loads the run with
nerfstudio's ``eval_setup`` (its checkpoint, on CUDA when available, else the CPU), evaluates the SDF network in
eval mode (running statistics; ``--refresh-stats N`` re-estimates them first over N training batches at the final
weights, :mod:`nerf_norm.nerfstudio.statistics`) block by block (:func:`nerf_norm.mesh.extract_mesh`), optionally keeps the
largest component, maps the vertices back to world units with the dataparser's scale matrix (``neus-data``
records it; DTU: millimetres) and writes the mesh with trimesh.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import UserError, require_finite_positive, require_memory
from ..mesh import MeshStats, extract_mesh, keep_largest_component, transform_vertices
from ..outputs import atomic_write, check_output_file
from .metrics import offline_lpips
from .run_errors import check_run_checkpoints
from .statistics import refresh_running_statistics

__all__ = ["ExtractMeshCommand", "run_extract_mesh", "load_pipeline"]


@dataclass
class ExtractMeshCommand:
    """Extract the SDF's zero level set of a trained neus(-cn) run as a mesh (CPU or GPU, bounded memory)."""

    load_config: Path
    """config.yml of the run (outputs/.../config.yml)"""
    out: Path = Path("mesh.ply")
    """mesh file to write (.ply, .obj, .stl)"""
    resolution: int = 512
    """samples per axis of the grid over the bounding cube"""
    bound: float = 1.0
    """half size of the cube in the model's normalized frame (NeuS: the unit sphere's cube)"""
    block: int = 64
    """block size in cells (memory: one (block+1)^3 block of samples at a time)"""
    largest_component: bool = False
    """keep only the largest connected component"""
    world: bool = True
    """map vertices to world units with the dataparser's scale matrix (when it records one)"""
    overwrite: bool = False
    """replace --out if it exists"""
    refresh_stats: int = 0
    """re-estimate the norms' running statistics at the run's final weights over this many training batches before
    extracting (loads the run's training data); 0 uses the checkpoint's running statistics"""
    chunk: int = 65536
    """points per network evaluation"""
    vertex_colors: bool = False
    """also write vertex colours from the colour network, seen along each vertex's normal (the view direction is
    the negative SDF gradient, as sdfstudio's texturing does)"""


def load_pipeline(config_path: Path, test_mode: str = "inference"):
    """``(config, pipeline)`` of a run, restored from its latest checkpoint (nerfstudio's eval_setup; ``test_mode``
    ``"inference"`` loads no images, ``"val"`` the training and validation data)."""
    from nerfstudio.utils.eval_utils import eval_setup

    config_path = Path(config_path)
    if not config_path.is_file():
        raise UserError(f"--load-config {config_path}: no such file (expected a run's config.yml)")
    check_run_checkpoints(_check_run_config(config_path))
    with offline_lpips():
        config, pipeline, _, _ = eval_setup(config_path, test_mode=test_mode)
    return config, pipeline


def _check_run_config(config_path: Path):
    """The run's ``TrainerConfig``; one line instead of a YAML or assertion traceback when ``config_path`` is not
    a nerfstudio run's config."""
    import yaml
    from nerfstudio.engine.trainer import TrainerConfig

    try:
        config = yaml.load(config_path.read_text(), Loader=yaml.Loader)  # nerfstudio's own way to read it
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(
            f"--load-config {config_path}: not a YAML file ({first}); expected the config.yml that "
            "ns-train writes into its run folder"
        ) from None
    if not isinstance(config, TrainerConfig):
        raise UserError(
            f"--load-config {config_path}: holds a {type(config).__name__}, not a nerfstudio "
            "TrainerConfig; expected the config.yml that ns-train writes into its run folder"
        )
    return config


def vertex_colors(field, vertices: np.ndarray, chunk: int, device) -> np.ndarray:
    """``[V, 4]`` uint8 RGBA of the colour network at ``vertices`` ``[V, 3]`` (the model's normalized frame), each
    seen along its normal: direction ``-n`` with ``n`` the normalized SDF gradient, the gradient itself as the
    network's normal input (as nerfstudio's SDF field feeds it), eval-mode statistics."""
    colors = []
    for part in torch.from_numpy(np.asarray(vertices, dtype=np.float32)).split(chunk):
        points = part.to(device).requires_grad_(True)
        with torch.enable_grad():
            sdf, geo = torch.split(field.forward_geonetwork(points), [1, field.config.geo_feat_dim], dim=-1)
            (gradients,) = torch.autograd.grad(sdf, points, torch.ones_like(sdf))
        with torch.no_grad():
            directions = -torch.nn.functional.normalize(gradients, dim=-1)
            cameras = torch.zeros(len(points), dtype=torch.long, device=points.device)
            rgb = field.get_colors(points, directions, gradients, geo, cameras)
        colors.append(rgb.detach().clamp(0.0, 1.0).cpu())
    rgb = torch.cat(colors).numpy() if colors else np.zeros((0, 3), np.float32)
    rgba = np.concatenate([rgb, np.ones((len(rgb), 1), np.float32)], axis=1)
    return (rgba * 255.0 + 0.5).astype(np.uint8)


def _scale_matrix(pipeline) -> Optional[np.ndarray]:
    outputs = getattr(pipeline.datamanager, "train_dataparser_outputs", None)
    scale = None if outputs is None else outputs.metadata.get("scale_mat")
    return None if scale is None else np.asarray(scale, dtype=np.float64)


def run_extract_mesh(cmd: ExtractMeshCommand, progress=None) -> Path:
    out = check_output_file(cmd.out, cmd.overwrite)
    if out.suffix.lower() not in (".ply", ".obj", ".stl", ".off", ".glb"):
        raise UserError(f"--out {out}: unsupported mesh format {out.suffix!r}; use .ply, .obj, .stl, .off or .glb")
    for option, value, least in (
        ("--resolution", cmd.resolution, 2),
        ("--block", cmd.block, 1),
        ("--chunk", cmd.chunk, 1),
    ):
        if value < least:
            raise UserError(f"{option} must be at least {least}, got {value}")
    require_finite_positive("--bound", cmd.bound)
    # the float32 SDF volume, the marching-cubes masks and the mesh it builds: ~16 bytes per grid sample
    require_memory(f"a mesh at --resolution {cmd.resolution}", 16.0 * cmd.resolution**3)
    if cmd.refresh_stats < 0:
        raise UserError(f"--refresh-stats must be at least 0, got {cmd.refresh_stats}")
    _, pipeline = load_pipeline(cmd.load_config, test_mode="val" if cmd.refresh_stats else "inference")
    model = pipeline.model
    field = getattr(model, "field", None)
    if not hasattr(field, "forward_geonetwork"):
        raise UserError(
            f"{cmd.load_config}: the model {type(model).__name__} has no SDF network "
            "(extract-mesh is for neus-style runs)"
        )
    if cmd.refresh_stats:
        refresh_running_statistics(pipeline, cmd.refresh_stats)
    model.eval()
    device = next(model.parameters()).device

    def sdf(points: torch.Tensor) -> torch.Tensor:
        return field.forward_geonetwork(points)[:, 0]

    b = float(cmd.bound)
    stats = MeshStats()
    vertices, faces = extract_mesh(
        sdf,
        ((-b, -b, -b), (b, b, b)),
        cmd.resolution,
        block=cmd.block,
        chunk=cmd.chunk,
        device=str(device),
        progress=progress,
        stats=stats,
    )
    if cmd.largest_component:
        vertices, faces = keep_largest_component(vertices, faces)
    colors = vertex_colors(field, vertices, cmd.chunk, device) if cmd.vertex_colors else None
    scale = _scale_matrix(pipeline) if cmd.world else None
    if scale is not None:
        vertices = transform_vertices(vertices, scale)
    import trimesh

    out.parent.mkdir(parents=True, exist_ok=True)
    mesh = trimesh.Trimesh(vertices, faces, vertex_colors=colors, process=False)
    with atomic_write(out) as tmp:
        mesh.export(str(tmp))
    return out
