"""What every benchmark result records about how it was made: the command as actually run, date and time, git
commit, machine (from the runtime) and settings; and the JSON-lines result store the benchmarks append to."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, List

from nerf_norm.provenance import cpu_model, git_commit, provenance as _provenance  # noqa: F401 - re-exported for the benchmarks

ROOT = Path(__file__).resolve().parent.parent


def provenance(settings: dict) -> dict:
    """The command (``sys.argv``), date and time, commit, machine and ``settings`` of this run
    (:func:`nerf_norm.provenance.provenance`, the one helper)."""
    return _provenance(settings, root=ROOT)


def machine_line(meta: dict) -> str:
    """The machine of a :func:`provenance` record in one line (with the load average when it was recorded)."""
    m = meta["machine"]
    load = f", load average {m['load_average_1min']}" if m.get("load_average_1min") is not None else ""
    return (
        f"{m['cpu']}, {m['cores']} cores, {m['torch_threads']} torch threads, torch {m['torch']}, "
        f"python {m['python']}, device {m['device']}{load}"
    )


def provenance_markdown(meta: dict) -> List[str]:
    return [
        f"- command: `{meta['command']}`",
        f"- date: {meta['date']}, commit {meta['commit']}",
        f"- machine: {machine_line(meta)}",
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
