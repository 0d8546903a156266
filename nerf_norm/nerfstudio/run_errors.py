"""One line instead of a traceback for nerfstudio's own failures on a broken run folder.

``ns-eval``, ``ns-viewer --load-config``, ``ns-render`` and ``ns-export`` load a run through nerfstudio's
``eval_setup``, which ends in an ``IndexError`` when the run's checkpoint folder is empty (the run saved none yet)
and in torch's reader error when a checkpoint is truncated. We do not patch nerfstudio: :func:`explain` reads the
failing frame of nerfstudio's ``eval_load_checkpoint`` from the traceback and names what is missing, and the
exception hook our method configurations install (:func:`nerf_norm.errors.install_user_error_hook`) prints it.
:func:`check_run_checkpoints` makes the same checks before loading, for our own commands.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import TracebackType
from typing import Optional

from ..errors import UserError

__all__ = ["explain", "check_run_checkpoints", "checkpoint_steps"]

_CHECKPOINT = re.compile(r"^step-(\d+)\.ckpt$")


def checkpoint_steps(folder: Path) -> list:
    """The steps of the ``step-*.ckpt`` files in ``folder``, ascending."""
    return sorted(int(m.group(1)) for p in Path(folder).iterdir() if (m := _CHECKPOINT.match(p.name)))


def _no_checkpoint(folder: Path) -> str:
    return (
        f"the run has no checkpoint: {folder} holds no step-*.ckpt (ns-train writes one every --steps-per-save "
        "steps and at the end; train longer, or point --load-config at a run that saved one)"
    )


def _unreadable(path: Path, exc: BaseException) -> str:
    first = (str(exc).splitlines() or [type(exc).__name__])[0]
    return f"cannot read checkpoint {path} ({first}): it is truncated or not a nerfstudio checkpoint"


def check_run_checkpoints(config) -> Path:
    """The newest checkpoint of the run ``config`` (a loaded ``config.yml``) describes, or :class:`UserError`
    naming what is missing: the checkpoint folder, a checkpoint in it, or a readable one."""
    import zipfile

    folder = Path(config.get_checkpoint_dir())
    if not folder.is_dir():
        raise UserError(
            f"the run's checkpoint folder {folder} (from its config.yml: output_dir / experiment / method / "
            "timestamp) does not exist; run from the folder ns-train ran in, or fix output_dir in config.yml"
        )
    steps = checkpoint_steps(folder)
    if not steps:
        raise UserError(_no_checkpoint(folder))
    path = folder / f"step-{steps[-1]:09d}.ckpt"
    try:
        with zipfile.ZipFile(path) as archive:  # torch's format is a zip archive; a truncated one has no directory
            archive.namelist()
    except (OSError, zipfile.BadZipFile) as exc:
        raise UserError(_unreadable(path, exc)) from None
    return path


def _marching_cubes_on_cpu(exporter, exc: BaseException) -> Optional[str]:
    """``ns-export marching-cubes`` fails on the CPU: it asserts a resolution divisible by 512 and then moves the
    SDF grid to CUDA unconditionally."""
    import torch

    if torch.cuda.is_available():
        return None
    config = getattr(exporter, "load_config", "RUN/config.yml")
    reason = " ".join(str(exc).split())
    return (
        f"ns-export marching-cubes needs a CUDA device (nerfstudio moves the SDF grid to CUDA; {reason}); on the CPU "
        f"(or any device) use: nerf-norm extract-mesh --load-config {config} --out mesh.ply"
    )


def _tsdf_without_surface(exporter, exc: BaseException) -> Optional[str]:
    """``ns-export tsdf`` on a run whose depth renders never cross the volume's zero level (an untrained or empty
    field, or a bounding box around nothing): scikit-image's marching cubes finds no surface."""
    if not (isinstance(exc, ValueError) and "Surface level must be within volume data range" in str(exc)):
        return None
    return (
        "ns-export tsdf found no surface: the depth of the training views fused into the volume never crosses its "
        "zero level (train longer, or check --bounding-box-min/--bounding-box-max surround the scene)"
    )


#: exporter class name -> what explains its failure on the user's side
_EXPORTER_FAILURES = {"ExportMarchingCubesMesh": _marching_cubes_on_cpu, "ExportTSDFMesh": _tsdf_without_surface}


def explain(exc: BaseException, tb: Optional[TracebackType]) -> Optional[str]:
    """A one-line message for ``exc`` when it was raised in nerfstudio's ``eval_load_checkpoint`` for a cause on
    the user's side, by ``ns-export marching-cubes`` on a machine without CUDA, or by ``ns-export tsdf`` finding no
    surface; ``None`` for anything else (the traceback is then shown as usual)."""
    frame, reading = None, False
    while tb is not None:
        code = tb.tb_frame.f_code
        filename = code.co_filename.replace("\\", "/")
        exporter = tb.tb_frame.f_locals.get("self") if code.co_name == "main" else None
        known = _EXPORTER_FAILURES.get(type(exporter).__name__)
        if known is not None and filename.endswith("nerfstudio/scripts/exporter.py"):
            message = known(exporter, exc)
            if message is not None:
                return message
        if code.co_name == "eval_load_checkpoint" and filename.endswith("nerfstudio/utils/eval_utils.py"):
            frame = tb.tb_frame
        elif frame is not None and filename.endswith("torch/serialization.py"):
            reading = True  # raised while torch read the file (not while the pipeline loaded its weights)
        tb = tb.tb_next
    if frame is None:
        return None
    config = frame.f_locals.get("config")
    load_path = frame.f_locals.get("load_path")
    if load_path is not None and reading:
        return _unreadable(Path(load_path), exc)
    folder = getattr(config, "load_dir", None)
    if folder is None:
        return None
    if isinstance(exc, (IndexError, ValueError)):  # no step-*.ckpt, or a file name it could not parse
        return _no_checkpoint(Path(folder))
    if isinstance(exc, AssertionError) and load_path is not None:
        return f"checkpoint {load_path} does not exist (--load-step names a step the run did not save)"
    return None
