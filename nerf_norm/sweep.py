"""``nerf-norm sweep``: a grid of fits (task x methods x architectures x inputs x seeds) run as Ray tasks.

Each cell is one ``nerf-norm TASK`` fit, built from the task's own command dataclass, so a cell trains exactly
what ``nerf-norm image --method ... --arch ...`` would. By default an embedded local Ray instance runs the cells
(nothing to start; ``--cpus`` of this machine); ``--address`` joins a running cluster (``ray start --head`` on one
node, ``ray start --address HEAD:6379`` on the others; every node needs nerf_norm and the inputs at the same
paths). Each finished cell is appended as one JSON line to ``OUT/results.jsonl`` at once; a rerun with the same
arguments skips the cells found there (failed cells are tried again); ``OUT/table.md`` gives the paper's layout,
each mean marked when a failed cell is missing from it. One folder holds one sweep: other arguments need another
``--out`` or ``--overwrite`` (which clears it). A sweep with a failed cell exits with code 1.

    nerf-norm sweep --task image --methods relu,relu+cn --archs 10x28 --iters 300 --out sweeps/kodak \\
        -- --downscale 4
Everything after ``--`` is passed to the task's command (``nerf-norm image --help`` lists them).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable, Dict, List, Literal, Optional, Sequence, Tuple

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .errors import UserError
from .networks import METHODS
from .outputs import check_output_dir, prepare_output_dir, write_text
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

TaskName = Literal["image", "occupancy", "ct", "mri"]
# the command dataclass of each task, the field that names its input file, its main metric (higher is better),
# the function that runs it
TASKS: Dict[str, Tuple[type, str, str, Callable]] = {
    "image": (ImageCommand, "image", "psnr", run_image),
    "occupancy": (OccupancyCommand, "mesh", "iou", run_occupancy),
    "ct": (CTCommand, "image", "psnr", run_ct),
    "mri": (MRICommand, "volume", "psnr", run_mri),
}
GRID_FIELDS = ("method", "arch", "seed", "iters", "out", "quiet", "resume", "threads", "overwrite")


@dataclass
class SweepCommand:
    """Run a grid of fits as Ray tasks (local by default); results in OUT/results.jsonl and OUT/table.md.
    The task's own options go after "--", e.g. nerf-norm sweep --task image --methods relu,relu+cn -- --downscale 4
    """

    task: TaskName = "image"
    """which fitting task every cell runs"""
    methods: str = "relu,relu+cn,pe,pe+cn"
    """comma-separated methods (nerf-norm image --help lists them)"""
    archs: Optional[str] = None
    """comma-separated architectures, e.g. 10x28,5x30 (default: the task's default architecture)"""
    inputs: Optional[str] = None
    """comma-separated input files (images, meshes, volumes); default: the task's bundled default"""
    seeds: str = "0"
    """comma-separated seeds"""
    iters: Optional[int] = None
    """training iterations of every cell (default: the task's default)"""
    out: Path = Path("outputs/sweep")
    """folder of results.jsonl, table.md and one sub-folder per cell"""
    address: Optional[str] = None
    """Ray cluster to join (e.g. auto, or ray://HEAD:10001); default: an embedded local Ray instance"""
    cpus: Optional[int] = None
    """CPUs of the embedded local Ray instance (default: all of this machine's)"""
    cpus_per_cell: float = 1.0
    """CPUs Ray reserves for each cell; also its torch threads (at least 1); at most the CPUs Ray has"""
    overwrite: bool = False
    """start over in an --out that holds another sweep (other arguments): its results, table and cells are
    removed first"""


class SweepFailed(UserError):
    """Some cells of a sweep failed (the others' results and the table are written): exit code 1."""

    exit_code = 1


@dataclass(frozen=True)
class Cell:
    """One fit of the grid."""

    method: str
    arch: str
    input: Optional[str]
    seed: int

    @property
    def name(self) -> str:
        stem = Path(self.input).stem if self.input else "default"
        return f"{stem}_{self.arch}_{self.method.replace('+', '-')}_s{self.seed}"


def _split(text: Optional[str]) -> List[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def task_command(cmd: SweepCommand, task_args: Sequence[str]):
    """The task's command dataclass with the options after ``--`` applied (parsed and typed by tyro)."""
    import tyro

    command_cls = TASKS[cmd.task][0]
    try:
        return tyro.cli(command_cls, args=list(task_args), prog=f"nerf-norm sweep --task {cmd.task} --")
    except SystemExit as exc:
        raise UserError(f"the task options after '--' are not valid for {cmd.task}: {' '.join(task_args)}") from exc


def grid(cmd: SweepCommand, base) -> List[Cell]:
    """The cells, validated before anything runs."""
    check_output_dir(cmd.out)
    methods = _split(cmd.methods)
    unknown = [m for m in methods if m not in METHODS]
    if not methods or unknown:
        raise UserError(f"--methods: unknown {unknown or 'none given'}; expected some of {', '.join(METHODS)}")
    archs = _split(cmd.archs) or [base.arch]
    try:
        seeds = [int(s) for s in _split(cmd.seeds)]
    except ValueError as exc:
        raise UserError(f"--seeds must be comma-separated integers, got {cmd.seeds!r}") from exc
    given = getattr(base, TASKS[cmd.task][1])  # an input named after "--" counts as the one input
    inputs: List[Optional[str]] = [str(Path(p).resolve()) for p in _split(cmd.inputs)] or [
        str(Path(given).resolve()) if given is not None else None
    ]
    missing = [p for p in inputs if p is not None and not Path(p).is_file()]
    if missing:
        raise UserError(f"--inputs: no such file: {', '.join(missing)}")
    if not seeds:
        raise UserError("--seeds: give at least one seed")
    if cmd.cpus_per_cell <= 0:
        raise UserError(f"--cpus-per-cell must be positive, got {cmd.cpus_per_cell}")
    if cmd.address is None:  # the embedded instance's CPUs are known now; a cluster's once joined (run_on_ray)
        _check_cpus_per_cell(cmd.cpus_per_cell, cmd.cpus if cmd.cpus is not None else os.cpu_count() or 1)
    cells = [Cell(m, a, i, s) for i, a, m, s in itertools.product(inputs, archs, methods, seeds)]
    key = settings_key(cmd, base)
    for cell in cells:  # every cell's full command must validate (arch syntax, options) before Ray starts
        _cell_command(cmd, base, cell, Path(cmd.out), key).validate()
    return cells


def _check_cpus_per_cell(cpus_per_cell: float, available: float) -> None:
    if cpus_per_cell > available:
        raise UserError(
            f"--cpus-per-cell {cpus_per_cell:g} is more than the {available:g} CPUs Ray has here: no cell could "
            "ever start; give at most that many (or --cpus)"
        )


def _cell_command(cmd: SweepCommand, base, cell: Cell, out: Path, key: str):
    values = {f.name: getattr(base, f.name) for f in fields(base)}
    values.update(
        method=cell.method,
        arch=cell.arch,
        seed=cell.seed,
        quiet=True,
        resume=True,
        overwrite=False,
        out=out / "cells" / key / cell.name,
        threads=max(1, int(cmd.cpus_per_cell)),
    )
    if cmd.iters is not None:
        values["iters"] = cmd.iters
    if cell.input is not None:
        values[TASKS[cmd.task][1]] = Path(cell.input)
    return type(base)(**values)


def settings_key(cmd: SweepCommand, base) -> str:
    """What, besides the cell, decides a result: the task and its options (iterations included)."""
    options = {k: str(v) for k, v in asdict(base).items() if k not in GRID_FIELDS + (TASKS[cmd.task][1],)}
    options["iters"] = str(cmd.iters if cmd.iters is not None else base.iters)
    options["task"] = cmd.task
    return hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:16]


def _run_cell(command, task: str) -> dict:
    """Runs in a Ray worker: one fit; returns its metrics and seconds (an exception marks the cell failed)."""
    from .process import configure_process

    configure_process(command.threads, command.retain_freed_memory)  # this worker process is the cell's own
    start = time.perf_counter()
    result, _ = TASKS[task][3](command)
    metrics = {k: v for k, v in result.metrics.items() if isinstance(v, (int, float))}
    return {"metrics": metrics, "seconds": time.perf_counter() - start}


def _finished(path: Path, key: str) -> Dict[Cell, dict]:
    done = {}
    if path.exists():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}, line {number}: not a JSON line ({exc.msg}); fix or remove it") from exc
            if rec.get("settings") == key:
                done[Cell(rec["method"], rec["arch"], rec["input"], rec["seed"])] = rec
    return done


def run_sweep(cmd: SweepCommand, task_args: Sequence[str] = ()) -> List[dict]:
    """Runs the cells not yet in ``OUT/results.jsonl``; writes the table; returns all finished records."""
    base = task_command(cmd, task_args)
    cells = grid(cmd, base)
    arguments = {k: v for k, v in asdict(cmd).items() if k in ("task", "methods", "archs", "inputs", "seeds", "iters")}
    out = prepare_output_dir(
        Path(cmd.out),
        ("results.jsonl", "table.md", "cells"),
        cmd.overwrite,
        command="nerf-norm sweep",
        run={**arguments, "task_options": list(task_args)},
    )
    results = out / "results.jsonl"
    key = settings_key(cmd, base)
    done = _finished(results, key)
    todo = [c for c in cells if c not in done]
    console.log(
        f"sweep {cmd.task}: {len(cells)} cells, {len(cells) - len(todo)} already in {results}, {len(todo)} to run"
    )
    failed: List[Tuple[Cell, str]] = []
    if todo:
        failed = _run_on_ray(cmd, base, todo, out, results, key, done)
    records = [done[c] for c in cells if c in done]
    write_table(out / "table.md", cmd, records, cells)
    for cell, error in failed:
        console.print(f"[red]failed[/red] {cell.name}: {error}")
    console.log(f"{len(records)} of {len(cells)} cells done, {len(failed)} failed; {out / 'table.md'}")
    if failed:
        raise SweepFailed(
            f"{len(failed)} of {len(cells)} cells failed (first: {failed[0][0].name}: {failed[0][1]}); the table "
            f"marks the means they are missing from; rerun the same command to try them again"
        )
    return records


def _run_on_ray(cmd, base, todo, out, results, key, done) -> List[Tuple[Cell, str]]:
    def finished(cell: Cell, outcome: dict) -> None:
        record = {
            "task": cmd.task,
            "method": cell.method,
            "arch": cell.arch,
            "input": cell.input,
            "seed": cell.seed,
            "metrics": outcome["metrics"],
            "seconds": outcome["seconds"],
            "settings": key,
        }
        with open(results, "a") as handle:  # one line per cell, written as it ends
            handle.write(json.dumps(record) + "\n")
        done[cell] = record

    jobs = {cell: (_run_cell, (_cell_command(cmd, base, cell, out, key), cmd.task)) for cell in todo}
    return run_on_ray(
        jobs,
        finished,
        f"sweep {cmd.task}",
        cpus_per_cell=cmd.cpus_per_cell,
        address=cmd.address,
        cpus=cmd.cpus,
        name=lambda cell: cell.name,
    )


def run_on_ray(
    jobs: Dict[object, Tuple[Callable, tuple]],
    on_done: Callable[[object, object], None],
    description: str,
    cpus_per_cell: float = 1.0,
    address: Optional[str] = None,
    cpus: Optional[int] = None,
    name: Callable[[object], str] = str,
) -> List[Tuple[object, str]]:
    """Runs ``fn(*args)`` for every ``key: (fn, args)`` of ``jobs`` as a Ray task (``cpus_per_cell`` CPUs each) on
    an embedded local instance (``cpus`` CPUs) or the cluster at ``address``; calls ``on_done(key, result)`` in
    this process as each one ends, shows a rich display of done / running / failed, and returns the failed
    ``(key, error)`` pairs (a failure never stops the other jobs). Shared by ``nerf-norm sweep`` and the task
    benchmarks (``benchmarks/task_tables.py``)."""
    try:
        import ray
    except ImportError as exc:
        raise UserError("running grids needs Ray: pip install 'nerf_norm[sweep]' (or pip install ray)") from exc
    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    try:
        _check_cpus_per_cell(cpus_per_cell, ray.cluster_resources().get("CPU", 0.0))
    except UserError:
        if started_here:
            ray.shutdown()
        raise
    pending = {}
    for key, (fn, args) in jobs.items():
        pending[ray.remote(num_cpus=cpus_per_cell, max_retries=0)(fn).remote(*args)] = key
    failed: List[Tuple[object, str]] = []
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[state]}"),
        TimeElapsedColumn(),
        console=console,
    )
    try:
        with progress:
            bar = progress.add_task(description, total=len(jobs), state="")
            finished = 0
            slots = max(1, int(ray.cluster_resources().get("CPU", 1.0) // cpus_per_cell))
            while pending:
                progress.update(
                    bar,
                    state=f"running {min(len(pending), slots)}, queued "
                    f"{max(0, len(pending) - slots)}, failed {len(failed)}",
                )
                ready, _ = ray.wait(list(pending), num_returns=1)
                key = pending.pop(ready[0])
                try:
                    outcome = ray.get(ready[0])
                except Exception as exc:  # the job's own error, reported; the other jobs go on
                    cause = getattr(exc, "cause", None) or exc
                    failed.append((key, f"{type(cause).__name__}: {cause}".splitlines()[0]))
                    progress.console.print(f"[red]failed[/red] {name(key)}: {failed[-1][1]}")
                else:
                    on_done(key, outcome)
                    finished += 1
                progress.update(bar, completed=finished + len(failed))
    finally:
        if started_here:
            ray.shutdown()
    return failed


def write_table(path: Path, cmd: SweepCommand, records: Sequence[dict], cells: Sequence[Cell]) -> Path:
    """The paper's layout: one row per architecture, one column per method, the task's main metric averaged over
    inputs and seeds (best in bold); then one row per input and architecture. ``cells`` is the whole grid: a
    mean over fewer runs than its cells (some failed) is marked ``*`` with the count, and a mean with none ``-``."""
    metric = TASKS[cmd.task][2]
    methods = [m for m in METHODS if any(c.method == m for c in cells)]
    archs = list(dict.fromkeys(c.arch for c in cells))
    inputs = list(dict.fromkeys(c.input for c in cells))
    incomplete = False

    def mean(rs: Sequence[dict], planned: int) -> Tuple[Optional[float], int, int]:
        """(mean or None, runs done, runs planned) of the metric over ``rs``."""
        vals = [r["metrics"][metric] for r in rs if metric in r["metrics"]]
        return (sum(vals) / len(vals) if vals else None), len(vals), planned

    def shown(value: Optional[float], done: int, planned: int, best: Optional[float]) -> str:
        nonlocal incomplete
        if value is None:
            incomplete |= planned > 0
            return "-"
        text = f"{value:.3f}"
        if done < planned:
            incomplete = True
            text += f"* ({done}/{planned})"
        return f"**{text}**" if value == best else text

    def row(label: str, rs: Sequence[dict], cs: Sequence[Cell]) -> str:
        means = [mean([r for r in rs if r["method"] == m], sum(c.method == m for c in cs)) for m in methods]
        best = max((v for v, _, _ in means if v is not None), default=None)
        return f"| {label} | " + " | ".join(shown(*m, best) for m in means) + " |"

    head = ["| case | " + " | ".join(methods) + " |", "|---|" + "---:|" * len(methods)]
    lines = [f"# nerf-norm sweep: {cmd.task}, {metric} (mean over inputs and seeds)", "", *head]
    lines += [row(a, [r for r in records if r["arch"] == a], [c for c in cells if c.arch == a]) for a in archs]
    if len(inputs) > 1:
        lines += ["", f"## {metric} per input", "", *head]
        lines += [
            row(
                f"{Path(i).name if i else 'default'} {a}",
                [r for r in records if r["arch"] == a and r["input"] == i],
                [c for c in cells if c.arch == a and c.input == i],
            )
            for i in inputs
            for a in archs
        ]
    if incomplete:
        lines += ["", "\\* mean over fewer runs than the grid has (done/planned): the other cells failed; - none done"]
    write_text(path, "\n".join(lines) + "\n")
    return path
