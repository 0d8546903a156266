"""The output rules of every command that writes files (``nerf-norm image|occupancy|ct|mri|ntk|spectral-dynamics|
make-scene|extract-mesh|sweep|demo|eval-dtu``, ``scripts/eval_dtu.py``).

- **Where**: :func:`check_output_dir` / :func:`check_output_file` refuse, before any work starts, an output that
  names a directory where a file is expected (or the reverse), or whose nearest existing parent is not a writable
  directory (read-only, a file, a full disk): one :class:`~nerf_norm.errors.UserError` naming the path.
- **Whose**: every output folder carries a manifest (:data:`MANIFEST`) naming the command that wrote it, the
  files it wrote and, for commands that may continue, the settings of the run. :func:`prepare_output_dir` refuses
  outputs of another run without ``--overwrite``; with it, removes everything any nerf_norm command recorded
  there (not only its own names), so no stale file of an earlier run stays beside the new ones.
- **How**: :func:`atomic_write` writes to a temporary name beside the target and renames it at the end, so an
  interrupted or failed write never leaves a half-written output.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Mapping, Optional, Sequence

from .errors import UserError

#: the manifest every output folder carries: {"command": ..., "outputs": [...], "run": {...} | null}
MANIFEST = ".nerf_norm_outputs.json"


def _problem(exc: OSError) -> str:
    return exc.strerror or os.strerror(exc.errno or errno.EIO)


def _check_writable_parent(path: Path, option: str) -> None:
    """The nearest existing ancestor of ``path`` must be a directory we can create files in."""
    parent = path.parent
    while not parent.exists():
        if parent == parent.parent:
            break
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{option} {path}: {parent} is a file, not a directory")
    try:  # the one reliable test (root ignores permission bits; a read-only mount or a full disk does not)
        fd, probe = tempfile.mkstemp(prefix=".nerf_norm_probe", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"{option} {path}: cannot write in {parent} ({_problem(exc)})") from None


def check_output_dir(out: Path, option: str = "--out") -> Path:
    """``out`` can be (or become) a folder we write into; nothing is created. Returns ``Path(out)``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{option} {out} is a file; it must name a directory (made if missing)")
    _check_writable_parent(out / "x", option)
    return out


def check_output_file(path: Path, overwrite: bool, option: str = "--out") -> Path:
    """``path`` can be written as a file: not a directory, not existing unless ``overwrite``, in a writable
    folder. Nothing is created. Returns ``Path(path)``."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{option} {path} is a directory; it must name a file")
    if path.exists() and not overwrite:
        raise UserError(f"{option} {path} exists; pass --overwrite to replace it or choose another path")
    _check_writable_parent(path, option)
    return path


@contextlib.contextmanager
def atomic_write(path: Path) -> Iterator[Path]:
    """Yields a temporary path beside ``path`` (same suffix, so writers that go by the suffix work); renames it
    to ``path`` when the block ends, removes it when the block fails."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: Path, text: str) -> Path:
    """``path.write_text(text)`` through :func:`atomic_write`."""
    with atomic_write(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def read_manifest(out: Path) -> Optional[dict]:
    """The manifest of ``out`` (``None`` when it has none or it is unreadable)."""
    try:
        record = json.loads((Path(out) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def prepare_output_dir(
    out: Path,
    names: Sequence[str],
    overwrite: bool,
    command: str = "nerf-norm",
    run: Optional[Mapping[str, object]] = None,
) -> Path:
    """Makes ``out`` ready for ``command``, whose outputs are ``names`` (files or folders inside it).

    Outputs already there (``names`` and everything the folder's manifest records) are an error naming them,
    unless ``overwrite``, which removes them first, or unless the manifest records this very ``run`` (the same
    command with the same settings, which continues it). Anything no nerf_norm command wrote is left alone.
    The manifest is then rewritten for ``command``.
    """
    out = check_output_dir(out)
    manifest = read_manifest(out) or {}
    recorded = [n for n in manifest.get("outputs", []) if isinstance(n, str) and n and "/" not in n and n != ".."]
    existing = [name for name in dict.fromkeys([*names, *recorded]) if (out / name).exists()]
    same_run = run is not None and manifest.get("command") == command and manifest.get("run") == dict(run)
    if existing and not overwrite and not same_run:
        shown = ", ".join(existing[:4]) + (f" and {len(existing) - 4} more" if len(existing) > 4 else "")
        by = manifest.get("command")
        by = f" (written by {by}{'' if by == command else ', another command'})" if by else ""
        raise UserError(f"{out} already holds {shown}{by}; pass --overwrite to replace them or choose another --out")
    if overwrite:
        for name in existing:
            _remove(out / name)
    out.mkdir(parents=True, exist_ok=True)
    kept = [n for n in recorded if (out / n).exists()] if same_run else []
    write_text(
        out / MANIFEST,
        json.dumps(
            {"command": command, "outputs": list(dict.fromkeys([*names, *kept])), "run": dict(run) if run else None},
            indent=2,
            default=str,
        ),
    )
    return out
