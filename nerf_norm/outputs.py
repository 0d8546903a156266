"""The overwrite rule of every command that writes a folder: nothing it did not make in this run is replaced
without ``--overwrite``, and ``--overwrite`` leaves none of the previous outputs behind."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

from .errors import UserError


def prepare_output_dir(out: Path, names: Sequence[str], overwrite: bool) -> Path:
    """Makes ``out`` ready for a command whose outputs are ``names`` (files or folders inside it).

    An existing output is an error naming it, unless ``overwrite``; then every one of ``names`` is removed first,
    so a smaller new result (fewer views, say) leaves no stale files. Anything else in ``out`` is left alone.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; it must name a directory (made if missing)")
    existing = [name for name in names if (out / name).exists()]
    if existing and not overwrite:
        shown = ", ".join(existing[:4]) + (f" and {len(existing) - 4} more" if len(existing) > 4 else "")
        raise UserError(f"{out} already holds {shown}; pass --overwrite to replace them or choose another --out")
    for name in existing:
        path = out / name
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out
