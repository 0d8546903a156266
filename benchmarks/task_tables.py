"""Shared driver of the task benchmarks (``occupancy.py``, ``ct.py``, ``mri.py``).

Runs every (case, method) pair through the task's own command code as Ray tasks (``nerf_norm.sweep``'s engine,
the one ``nerf-norm sweep`` uses), appends each result to a JSON file as soon as it exists (an interrupted
benchmark resumes where it stopped), and writes a Markdown table in the paper's layout with the paper's numbers
on the row under ours.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from nerf_norm.networks import METHODS, PAPER_METHODS  # noqa: F401 - PAPER_METHODS re-exported for the benchmarks
from nerf_norm.provenance import provenance as nerf_provenance

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
SCRATCH = HERE / "scratch"
DATA = Path(os.environ.get("NERF_NORM_DATA", HERE.parent.parent / "shared" / "data"))
#: every method of the registry: the paper's 13 (:data:`PAPER_METHODS`, the order of its tables) and the later
#: baselines
ALL_METHODS: Tuple[str, ...] = tuple(METHODS)


@dataclass
class Case:
    """One row group of a table: a label (scene or architecture) and how to run a method on it."""

    label: str
    run: Callable[[str, Path], Tuple[Dict[str, float], Dict[str, List[float]]]]
    """``run(method, out_dir) -> (metrics, history)``"""


def machine(threads: int) -> str:
    """The machine as the runtime reports it (CPU model, cores, the cells' torch threads, versions)."""
    m = nerf_provenance({})["machine"]
    return (
        f"{m['cpu']}, {m['cores']} cores, {threads} torch threads, python {m['python']}, torch {m['torch']}, "
        f"device {m['device']}"
    )


def provenance(script: str, threads: int, setting: str) -> dict:
    """What every result file records (:func:`nerf_norm.provenance.provenance`, the one helper): the command as
    actually run, the date and time, the commit, the machine and the settings. ``script``: a benchmark's name, or
    a path from the repository root without ``.py`` (an experiment's)."""
    path = script if "/" in script else f"benchmarks/{script}"  # a bare name is a benchmark's
    record = nerf_provenance({"threads": threads}, program=f"python {path}.py", root=ROOT)
    return {
        "command": record["command"],
        "machine": machine(threads),
        "setting": setting,
        "date": record["date"],
        "commit": record["commit"],
    }


def provenance_lines(title: str, meta: dict) -> List[str]:
    """The head of a result markdown file: ``# title`` and the provenance :func:`provenance` recorded."""
    commands = meta.get("commands") or [meta["command"]]
    shown = (
        f"- command: `{commands[0]}`"
        if len(commands) == 1
        else "- commands (runs resumed by each; same settings): " + ", ".join(f"`{c}`" for c in commands)
    )
    return [
        f"# {title}",
        "",
        shown,
        f"- machine: {meta['machine']}",
        f"- setting: {meta['setting']}",
        f"- date: {meta['date']}",
    ]


def resume_keyed(out: Path, meta: dict, runs: Dict[str, Callable[[], dict]]) -> dict:
    """The driver of single-process diagnosis scripts: ``out.json`` holds ``{"meta", "runs": {key: result}}``;
    every key of ``runs`` it lacks is run (``runs[key]()``) and written at once, so a rerun resumes. ``meta``
    replaces the file's provenance, except for an ``errata`` note on earlier runs, which stays."""
    path = out.with_suffix(".json")
    record = json.loads(path.read_text()) if path.exists() else {"runs": {}}
    errata = record.get("meta", {}).get("errata")
    record["meta"] = {**meta, **({"errata": errata} if errata else {})}
    for key, run in runs.items():
        if key not in record["runs"]:
            record["runs"][key] = run()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(record, indent=1))
    return record


def run_cases(
    name: str,
    cases: Sequence[Case],
    methods: Sequence[str],
    keep: Sequence[str],
    setting: str,
    threads: int,
    out: Path,
    script: Optional[str] = None,
    parallel: Optional[int] = None,
    address: Optional[str] = None,
    report_only: bool = False,
) -> dict:
    """Runs what ``out.json`` does not hold yet, as Ray tasks of ``threads`` CPUs each (``nerf_norm.sweep``'s
    engine: an embedded local instance of ``parallel`` CPUs, default all, or the cluster at ``address``); each
    result is appended to ``out.json`` as it ends. Returns the record (meta + runs). ``name`` names the scratch
    folder, ``script`` (default: ``name``) the benchmark script in the recorded command. ``report_only``: run
    nothing, return what ``out.json`` holds (the report then shows missing runs as ``-``)."""
    from nerf_norm import kernels as cn_kernel
    from nerf_norm.sweep import run_on_ray

    cn_kernel.load()  # the one-time build/load of the CrossNorm kernel must not land in a timed run
    json_path = out.with_suffix(".json")
    record = json.loads(json_path.read_text()) if json_path.exists() else {"runs": []}
    earlier = record.get("meta", {}).get("setting")
    if earlier is not None and earlier != setting:
        raise SystemExit(
            f"{json_path} holds runs made with other settings ({earlier!r}); resuming would mix "
            f"them with {setting!r}. Move it away or choose another --out."
        )
    done = {(r["case"], r["method"]) for r in record["runs"]}
    meta = provenance(script or name, threads, setting)
    jobs = {
        (case.label, method): (_fresh_run, (case.run, method, SCRATCH / name / case.label / method.replace("+", "_")))
        for method in methods  # method by method: each method's row completes first, for an interrupted run
        for case in cases
        if (case.label, method) not in done
    }

    def finished(key, outcome) -> None:
        (label, method), (metrics, history) = key, outcome
        entry = {
            "case": label,
            "method": method,
            **{k: metrics[k] for k in keep if k in metrics},
            "params": metrics["params"],
            "train_seconds": metrics["train_seconds"],
            "iterations": metrics["iterations"],
            "history": history,
        }
        _append(json_path, meta, entry)
        shown = "  ".join(f"{k} {metrics[k]:.4f}" for k in keep if k in metrics)
        print(f"{label} {method:8s} {shown}  {metrics['train_seconds']:.1f}s", flush=True)

    print(
        f"{name}: {len(cases) * len(methods)} runs, {len(done)} already in {json_path}, "
        f"{'none run (--report-only), ' + str(len(jobs)) + ' missing' if report_only else str(len(jobs)) + ' to run'}",
        flush=True,
    )
    if report_only:
        if not record["runs"]:
            raise SystemExit(f"--report-only: {json_path} holds no runs")
        return record
    failed = (
        run_on_ray(
            jobs,
            finished,
            name,
            cpus_per_cell=threads,
            address=address,
            cpus=parallel,
            name=lambda key: f"{key[0]} {key[1]}",
        )
        if jobs
        else []
    )
    if failed:
        raise SystemExit(
            f"{len(failed)} runs failed (the others are recorded): "
            + "; ".join(f"{label} {method}: {error}" for (label, method), error in failed)
        )
    return _locked_read(json_path) or record


def _fresh_run(run: Callable, method: str, scratch: Path):
    """One run in a Ray worker: a clean scratch folder, then ``run(method, scratch) -> (metrics, history)``."""
    shutil.rmtree(scratch, ignore_errors=True)
    return run(method, scratch)


@contextlib.contextmanager
def _lock(json_path: Path):
    """An exclusive lock beside ``json_path``: several benchmark processes (e.g. one per image) may share it."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    with open(json_path.with_suffix(".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _locked_read(json_path: Path) -> Optional[dict]:
    with _lock(json_path):
        return json.loads(json_path.read_text()) if json_path.exists() else None


def _append(json_path: Path, meta: dict, entry: dict) -> dict:
    """Adds ``entry`` to the JSON on disk (re-read under the lock, so concurrent writers lose nothing)."""
    with _lock(json_path):
        record = json.loads(json_path.read_text()) if json_path.exists() else {"runs": []}
        earlier = record.get("meta", {})
        commands = earlier.get("commands") or ([earlier["command"]] if "command" in earlier else [])
        record["meta"] = {**meta, "commands": commands + [meta["command"]] * (meta["command"] not in commands)}
        if not any((r["case"], r["method"]) == (entry["case"], entry["method"]) for r in record["runs"]):
            record["runs"].append(entry)
        tmp = json_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1))
        os.replace(tmp, json_path)
    return record


def method_color(plt, index: int):
    """The colour of the ``index``-th method of a figure: 40 distinct ones (tab20, then tab20b), so the 22 methods of
    the registry never share one (tab20 alone clips index 20 and above to its last colour)."""
    palette = [*plt.get_cmap("tab20").colors, *plt.get_cmap("tab20b").colors]
    return palette[index % len(palette)]


def recorded_methods(record: dict) -> List[str]:
    """The methods ``record``'s runs hold, in registry order (others after, as first met): a report covers what its
    file holds, whichever ``--methods`` the last resumed run named."""
    held = list(dict.fromkeys(r["method"] for r in record["runs"]))
    return [m for m in ALL_METHODS if m in held] + [m for m in held if m not in ALL_METHODS]


def measure_costs(
    labels: Sequence[str], rounds: int, short_run: Callable[[str, Path], Dict[str, List[float]]], threads: int
) -> Dict[str, List[float]]:
    """Seconds per iteration of every label's short run, once per round, in ``rounds`` interleaved rounds (the order
    reversed every other round, so drift in the machine's load spreads evenly). ``short_run(label, out) -> history``
    trains a short run (``iteration`` and ``seconds`` logged at least twice); a round's cost is the slope of seconds
    between its first and last logged point, so set-up time is left out. Returns ``{label: [cost per round]}``."""
    import tempfile
    import time

    import torch

    from nerf_norm import kernels as cn_kernel

    torch.set_num_threads(threads)
    cn_kernel.load()
    work = Path(tempfile.mkdtemp(prefix="retime_"))
    slopes: Dict[str, List[float]] = {m: [] for m in labels}
    try:
        for r in range(rounds):
            for m in list(labels) if r % 2 == 0 else list(reversed(labels)):
                h = short_run(m, work / "run")
                slopes[m].append((h["seconds"][-1] - h["seconds"][0]) / (h["iteration"][-1] - h["iteration"][0]))
                shutil.rmtree(work / "run", ignore_errors=True)
            print(f"timing round {r + 1}/{rounds} done ({time.strftime('%H:%M:%S')})")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return slopes


def retime(
    json_path: Path,
    script: str,
    methods: Sequence[str],
    rounds: int,
    short_run: Callable[[str, Path], Dict[str, List[float]]],
    threads: int,
    what: str,
) -> dict:
    """Measures every method's seconds per iteration on its own (:func:`measure_costs`) and stores them in
    ``json_path``'s record under ``timing`` (:func:`seconds_axis` then puts equal-time comparisons on them instead
    of the runs' own clocks, which shared the machine); a method's cost is the median over rounds. ``what`` says
    what the short runs are. Returns the record."""
    import statistics

    if not json_path.exists():
        raise SystemExit(f"--retime: {json_path} holds no runs yet (the costs are stored beside them)")
    slopes = measure_costs(methods, rounds, short_run, threads)
    meta = provenance(
        script,
        threads,
        f"{rounds} interleaved rounds (order reversed every other round) of {what}; the cost is the median over "
        f"rounds of the slope of training seconds between the first and last logged point",
    )
    timing = {"meta": meta, "seconds_per_iter": {m: statistics.median(v) for m, v in slopes.items()}, "rounds": slopes}
    with _lock(json_path):
        record = json.loads(json_path.read_text())  # read now: runs appended meanwhile are kept
        record["timing"] = timing
        json_path.write_text(json.dumps(record, indent=1))
    return record


def timing_notes(record: dict) -> List[str]:
    """Notes on the clocks behind a record's equal-time comparisons: the runs' own (shared machine) or the measured
    per-method costs of :func:`retime`."""
    notes = [
        record.get(
            "clock_note",
            "the runs' own clocks (`train_seconds`, the curves' `seconds`) are wall time on a 2-core machine that other "
            "runs shared, so they compare runs only roughly",
        )
    ]
    if "timing" in record:
        t = record["timing"]["meta"]
        notes.append(
            f"equal-time comparisons use each method's **measured** seconds per iteration instead: `{t['command']}`, "
            f"{t['machine']}, {t['date']}: {t['setting']}"
        )
    else:
        notes.append("equal-time comparisons wait for measured per-method costs (`--retime`)")
    return notes


def equal_time_rows(record: dict, methods: Sequence[str], labels: Sequence[str], key: str, fmt: str) -> List[str]:
    """Markdown rows ``case (budget) | methods...``: the best logged training ``key`` each method reached within
    the training time of the fastest method on the same case (time from :func:`seconds_axis`), best in bold, and
    the mean over the cases when there are several; ``-`` where a run is missing."""
    by = {(r["case"], r["method"]): r for r in record["runs"]}
    lines = ["| case | " + " | ".join(methods) + " |", "|---|" + "---:|" * len(methods)]

    def row(name: str, vals: List[float]) -> str:
        finite = [v for v in vals if v == v]
        best = max(finite) if finite else None
        cells = [("**" + fmt.format(v) + "**" if v == best else fmt.format(v)) if v == v else "-" for v in vals]
        return f"| {name} | " + " | ".join(cells) + " |"

    per_case = []
    for label in labels:
        runs = {m: by[(label, m)] for m in methods if (label, m) in by}
        if not runs:
            continue
        budget = time_budget(record, runs.values())
        vals = [best_within(record, runs[m], budget, key) if m in runs else float("nan") for m in methods]
        lines.append(row(f"{label} ({budget:.0f} s)", vals))
        per_case.append(vals)
    if len(per_case) > 1:
        lines.append(row("mean", [sum(col) / len(col) for col in zip(*per_case)]))
    return lines


def best_within(record: dict, run: dict, seconds: float, key: str = "psnr") -> float:
    """Best logged training ``key`` of ``run`` (default PSNR: the authors' best-PSNR metric) at or before ``seconds``
    of training on :func:`seconds_axis`'s clock, i.e. cut at a time budget."""
    values = run["history"][key]
    return max([v for t, v in zip(seconds_axis(record, run), values) if t <= seconds] or [values[0]])


def time_budget(record: dict, runs: Iterable[dict]) -> float:
    """The training time of the fastest of ``runs`` (its last logged point on :func:`seconds_axis`'s clock): the
    budget at which an equal-time comparison cuts them all (:func:`best_within`)."""
    return min(seconds_axis(record, r)[-1] for r in runs)


def seconds_axis(record: dict, run: dict) -> list:
    """Training seconds of each logged point of ``run``: iteration x the method's measured cost when the record has
    a ``timing`` entry for it (measured on its own, interleaved), else the run's own clock."""
    timing = record.get("timing", {}).get("seconds_per_iter", {})
    h = run["history"]
    if run["method"] in timing:
        return [i * timing[run["method"]] for i in h["iteration"]]
    return list(h["seconds"])


def table(
    record: dict,
    methods: Sequence[str],
    metrics: Sequence[Tuple[str, str, str]],
    labels: Sequence[str],
    paper: Dict[Tuple[str, str], Sequence[float]],
) -> List[str]:
    """Markdown rows ``metric | case | source | methods...``: ours (best in bold) and, under it, the paper's.

    ``metrics``: ``(key in the runs, name shown, format)``; ``paper[(key, label)]``: the paper's 13 values in
    registry order (missing: no paper row).
    """
    by = {(r["case"], r["method"]): r for r in record["runs"]}
    lines = ["| metric | case | source | " + " | ".join(methods) + " |", "|---|---|---|" + "---:|" * len(methods)]
    for key, shown, fmt in metrics:
        for label in labels:
            vals = [by[(label, m)].get(key, float("nan")) if (label, m) in by else float("nan") for m in methods]
            finite = [v for v in vals if v == v]
            best = max(finite) if finite else None
            cells = [("**" + fmt.format(v) + "**") if v == best else ("-" if v != v else fmt.format(v)) for v in vals]
            lines.append(f"| {shown} | {label} | ours | " + " | ".join(cells) + " |")
            if (key, label) in paper:
                ref = dict(zip(PAPER_METHODS, paper[(key, label)]))
                cells = [fmt.format(ref[m]) if m in ref else "-" for m in methods]
                lines.append(f"| {shown} | {label} | paper | " + " | ".join(cells) + " |")
    return lines


def seconds_table(record: dict, methods: Sequence[str], labels: Sequence[str]) -> List[str]:
    by = {(r["case"], r["method"]): r for r in record["runs"]}
    lines = ["| case | " + " | ".join(methods) + " |", "|---|" + "---:|" * len(methods)]
    for label in labels:
        cells = [
            f"{by[(label, m)]['train_seconds'] / by[(label, m)]['iterations']:.3f}" if (label, m) in by else "-"
            for m in methods
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def write_report(
    out: Path,
    title: str,
    record: dict,
    notes: Sequence[str],
    methods: Sequence[str],
    metrics: Sequence[Tuple[str, str, str]],
    labels: Sequence[str],
    paper: Dict[Tuple[str, str], Sequence[float]],
    curve_at: Sequence[int] = (),
    equal_time: bool = False,
) -> Path:
    """``out.md``: title, provenance (command, machine, setting, date), notes, the paper-layout table and the
    seconds per iteration; with ``curve_at``, also the training curves (:func:`curves`); with ``equal_time``, the
    first metric's training value within the fastest method's time (:func:`equal_time_rows`, its history key)."""
    meta = record["meta"]
    clocks = timing_notes(record) if equal_time else []
    lines = [*provenance_lines(title, meta), *[f"- {n}" for n in [*notes, *clocks]], ""]
    lines += table(record, methods, metrics, labels, paper)
    key = metrics[0][0]
    ordering = orderings_table(record, key, labels, paper)
    if ordering:
        lines += ["", f"## Do the paper's orderings hold? ({metrics[0][1]}; cells: ours / paper)", ""] + ordering
    if equal_time:
        lines += [
            "",
            "## Equal wall-clock time",
            "",
            f"Best logged training `{key}` (on the training batches) reached within the training time of the fastest "
            "method on the same case, time = iteration x "
            + ("the method's measured seconds per iteration." if "timing" in record else "the runs' own clocks."),
            "",
        ] + equal_time_rows(record, methods, labels, key, metrics[0][2])
    lines += ["", "## Seconds per iteration", ""]
    if "timing" in record:
        cost = record["timing"]["seconds_per_iter"]
        cells = [f"{cost[m]:.4f}" if m in cost else "-" for m in methods]
        lines += ["measured:", "", "| | " + " | ".join(methods) + " |", "|---|" + "---:|" * len(methods)]
        lines += ["| s/iter | " + " | ".join(cells) + " |", "", "the runs' own clocks:", ""]
    lines += seconds_table(record, methods, labels)
    if curve_at:
        rows = curves(out, record, key, methods, labels, curve_at, metrics[0][2])
        if rows:
            lines += [
                "",
                f"## `{key}` during training",
                "",
                f"The value each run logged (every 25 iterations, from its training-mode forward pass; for "
                f"batch-trained tasks on the current batch) nearest each iteration; curves: "
                f"`{out.with_suffix('.png').name}`.",
                "",
            ] + rows
    path = out.with_suffix(".md")
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")
    return path


def curves(
    out: Path,
    record: dict,
    key: str,
    methods: Sequence[str],
    labels: Sequence[str],
    at: Sequence[int],
    fmt: str = "{:.2f}",
) -> List[str]:
    """The training curves the runs recorded: ``out.png`` (``key`` against iteration, one panel per case) and
    Markdown rows of ``key`` at the iterations ``at`` (the logged iteration nearest to each) per case and method."""
    from nerf_norm.plotting import pyplot

    by = {(r["case"], r["method"]): r["history"] for r in record["runs"] if key in r.get("history", {})}
    labels = [label for label in labels if any((label, m) in by for m in methods)]
    if not labels:
        return []
    plt = pyplot()
    fig, axes = plt.subplots(1, len(labels), figsize=(5 * len(labels), 3.6), squeeze=False)
    for ax, label in zip(axes[0], labels):
        for index, method in enumerate(methods):
            if (label, method) in by:
                ax.plot(
                    by[(label, method)]["iteration"],
                    by[(label, method)][key],
                    lw=1.4,
                    label=method,
                    color=method_color(plt, index),
                    ls="--" if "+" not in method else "-",
                )
        ax.set_title(label)
        ax.set_xlabel("iteration")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    # one legend, right of the last panel: with many methods a legend inside each panel covers the curves
    axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), ncol=1 + len(methods) // 12)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=110, bbox_inches="tight")
    plt.close(fig)

    def value(history: Dict[str, List[float]], iteration: int) -> str:
        nearest = min(range(len(history["iteration"])), key=lambda i: abs(history["iteration"][i] - iteration))
        return fmt.format(history[key][nearest])

    lines = ["| case | method | " + " | ".join(f"it {i}" for i in at) + " |", "|---|---|" + "---:|" * len(at)]
    lines += [
        f"| {label} | {method} | " + " | ".join(value(by[(label, method)], i) for i in at) + " |"
        for label in labels
        for method in methods
        if (label, method) in by
    ]
    return lines


def _orderings(values: Dict[str, float]) -> Dict[str, bool]:
    """The paper's orderings on one row of values (higher is better): every norm above no norm, per family, and
    PE+CN best of the paper's 13 when all 13 are there."""
    checks = {
        f"{fam}+{n}>{fam}": values[f"{fam}+{n}"] > values[fam]
        for fam in ("relu", "pe")
        for n in ("bn", "ln", "gn", "cn")
        if f"{fam}+{n}" in values and fam in values
    }
    if all(m in values for m in PAPER_METHODS):
        checks["pe+cn best"] = values["pe+cn"] >= max(values[m] for m in PAPER_METHODS)
    return checks


def orderings_table(
    record: dict, key: str, labels: Sequence[str], paper: Dict[Tuple[str, str], Sequence[float]]
) -> List[str]:
    """Markdown rows: for every case, whether each of the paper's orderings holds in ours (and in the paper's own
    numbers, where it has that case): ``yes``/``no``, ``ours/paper``."""
    by = {(r["case"], r["method"]): r[key] for r in record["runs"] if key in r}
    checks = {}  # case -> (ours, the paper's)
    for label in labels:
        ours = _orderings({m: by[(label, m)] for m in PAPER_METHODS if (label, m) in by})
        theirs = _orderings(dict(zip(PAPER_METHODS, paper[(key, label)]))) if (key, label) in paper else {}
        checks[label] = (ours, theirs)
    found = {c for ours, _ in checks.values() for c in ours}  # every check any case has, in the paper's order
    header = [c for c in _orderings({m: 0.0 for m in PAPER_METHODS}) if c in found]
    if not header:
        return []
    yn = lambda v: "yes" if v else "no"  # noqa: E731
    rows = []
    for label, (ours, theirs) in checks.items():
        cells = [yn(ours[c]) + (f" / {yn(theirs[c])}" if c in theirs else "") if c in ours else "-" for c in header]
        rows.append(f"| {label} | " + " | ".join(cells) + f" | {sum(ours.values())}/{len(ours)} |")
    return ["| case | " + " | ".join(header) + " | held (ours) |", "|---|" + "---|" * (len(header) + 1)] + rows
