"""What a result records about how it was made: the command as actually run (``sys.argv``), date and time, the
git commit of the checkout it ran from (when there is one), the machine as the runtime reports it, and the
settings. Used by ``nerf-norm demo`` and, through ``benchmarks/provenance.py``, by every benchmark."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import torch

__all__ = ["provenance", "cpu_model", "git_commit"]

_CHECKOUT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit(root: Path = _CHECKOUT) -> str:
    """The short commit of the checkout at ``root`` (``+uncommitted`` when tracked files changed), or
    ``unknown`` outside a checkout (an installed wheel)."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
        if out.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        return out.stdout.strip() + ("+uncommitted" if dirty else "")
    except OSError:
        return "unknown"


def _load_average() -> Optional[float]:
    """The 1-minute load average when the run was recorded (how busy the machine was), where the OS reports it."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def provenance(settings: dict, program: Optional[str] = None, root: Path = _CHECKOUT) -> dict:
    """The command (``program`` and ``sys.argv[1:]``; default: ``sys.argv[0]`` relative to ``root``), date and
    time, commit, machine and ``settings`` of this run."""
    if program is None:
        program = "python " + os.path.relpath(sys.argv[0], root)
    return {
        "command": " ".join([program, *map(shlex.quote, sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "commit": git_commit(root),
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "device": "cuda" if torch.cuda.is_available() else "cpu",
            "load_average_1min": _load_average(),
        },
        "settings": settings,
    }
