"""What every benchmark result records about how it was made: the command as actually run, date and time, git
commit, machine (from the runtime) and settings; and the JSON-lines result store the benchmarks append to."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable, List

import torch

ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        return out.stdout.strip() + ("+uncommitted" if dirty else "")
    except OSError:
        return "unknown"


def provenance(settings: dict) -> dict:
    """The command (``sys.argv``), date and time, commit, machine and ``settings`` of this run."""
    return {
        "command": "python " + " ".join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "commit": git_commit(),
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "device": "cuda" if torch.cuda.is_available() else "cpu",
        },
        "settings": settings,
    }


def provenance_markdown(meta: dict) -> List[str]:
    m = meta["machine"]
    return [
        f"- command: `{meta['command']}`",
        f"- date: {meta['date']}, commit {meta['commit']}",
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['torch_threads']} torch threads, torch {m['torch']}, "
        f"python {m['python']}, device {m['device']}",
        "- settings: " + ", ".join(f"{k}={v}" for k, v in meta["settings"].items()),
    ]


def append_rows(path: Path, rows: Iterable[dict]) -> None:
    """Appends ``rows`` to the JSON-lines file ``path`` (one object a line), flushing each."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
            handle.flush()


def read_rows(path: Path) -> List[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
