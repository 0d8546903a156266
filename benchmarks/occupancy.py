"""3D occupancy benchmark (paper Table 3) at a CPU budget: every registry method (default) on the Stanford meshes.

Every run goes through ``nerf-norm occupancy``'s code path (voxelization, BCE on random grid points, Adam
5e-3 -> 5e-4, IoU of the 0.5 level on the grid). Results are appended to the JSON after every run, so an
interrupted benchmark resumes where it stopped.

    .venv/bin/python benchmarks/occupancy.py        # writes benchmarks/results/occupancy.{json,md}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import task_tables
import tyro
from task_tables import ALL_METHODS, DATA, RESULTS, Case, recorded_methods, run_cases, write_report

from nerf_norm.tasks.commands import OccupancyCommand, run_occupancy

# paper Table 3 (IoU), methods in registry order
PAPER = {
    ("iou", "armadillo"): (0.950, 0.983, 0.969, 0.976, 0.981, 0.982, 0.983, 0.986, 0.989, 0.996, 0.996, 0.997, 0.997),
    ("iou", "bunny"): (0.947, 0.992, 0.989, 0.991, 0.994, 0.994, 0.994, 0.995, 0.997, 0.999, 0.998, 0.999, 0.999),
    ("iou", "dragon"): (0.970, 0.974, 0.975, 0.953, 0.981, 0.982, 0.981, 0.987, 0.986, 0.996, 0.996, 0.996, 0.998),
}


@dataclass
class Args:
    """Fit the occupancy of Stanford meshes with the methods (default: all of the registry); write a Table-3-style
    summary."""

    meshes: tuple[Path, ...] = (
        DATA / "meshes" / "armadillo.obj",
        DATA / "meshes" / "bunny.obj",
        DATA / "meshes" / "dragon.ply",
    )
    methods: tuple[str, ...] = ALL_METHODS
    arch: str = "2x256"
    resolution: int = 96
    batch: int = 25_000
    iters: int = 400
    """4x the first CPU budget (paper fidelity plan, docs/reproduction.md)"""
    threads: int = 2
    seed: int = 0
    out: Path = RESULTS / "occupancy"
    """output stem: OUT.json, OUT.md"""
    curve_at: tuple[int, ...] = ()
    """also report the training-batch IoU at these iterations and plot the training curves (OUT.png)"""
    report_only: bool = False
    """write OUT.md from the runs OUT.json holds, train nothing"""
    retime: int = 0
    """> 0: measure every method's seconds per iteration in this many interleaved rounds (short runs on the first
    mesh at the benchmark's settings), store them in OUT.json under ``timing`` and rewrite the report; the
    equal-time table then uses iteration x measured cost instead of the runs' own clocks"""
    retime_iters: int = 30
    """training steps of each timing run (the cost is the slope between its first and last logged point)"""


def main(args: Args) -> None:
    for mesh in args.meshes:
        if not mesh.is_file():
            raise SystemExit(f"mesh not found: {mesh} (set NERF_NORM_DATA or --meshes)")

    def command(mesh: Path, method: str, out: Path, iters: int, **options) -> OccupancyCommand:
        return OccupancyCommand(
            mesh=mesh,
            method=method,
            arch=args.arch,
            resolution=args.resolution,
            batch=args.batch,
            iters=iters,
            seed=args.seed,
            quiet=True,
            resume=False,
            out=out,
            threads=args.threads,
            **options,
        )

    def case(mesh: Path) -> Case:
        def run(method: str, out: Path):
            result, _ = run_occupancy(command(mesh, method, out, args.iters))
            return result.metrics, {k: result.history[k] for k in ("iteration", "seconds", "iou")}

        return Case(mesh.stem, run)

    record_path = args.out.with_suffix(".json")
    if args.retime > 0:

        def short_run(method: str, out: Path) -> dict:
            cmd = command(args.meshes[0], method, out, args.retime_iters, log_every=args.retime_iters // 3)
            return run_occupancy(cmd)[0].history

        what = f"{args.retime_iters}-step runs per method on {args.meshes[0].stem} at the benchmark's settings"
        task_tables.retime(record_path, "occupancy", args.methods, args.retime, short_run, args.threads, what)

    setting = (
        f"{args.arch}, {args.resolution}^3 grid (paper 512^3), {args.batch:,} random grid points per step "
        f"(paper 100,000), {args.iters} steps (paper 200 epochs), Adam 5e-3 with cosine decay to 5e-4, "
        f"seed {args.seed}; IoU of sigmoid > 0.5 on the grid"
    )
    record = run_cases(
        "occupancy",
        [case(m) for m in args.meshes],
        args.methods,
        ("iou", "bce"),
        setting,
        args.threads,
        args.out,
        report_only=args.report_only or args.retime > 0,
    )
    write_report(
        args.out,
        "3D occupancy (Table 3 layout)",
        record,
        [
            "meshes: ../shared/data/meshes (Stanford scans; bunny and dragon are not closed: inside = generalized "
            "winding number > 1/2, which fills their holes; see nerf_norm/tasks/occupancy.py)",
            "BN, GN and CN keep running statistics, re-estimated over 16 training batches at the final weights before "
            "the grid is evaluated (`--stats-batches`; before 2026-11-24 the grid was evaluated in chunks with their "
            "own statistics, a bug: `experiments/occupancy_eval_gap/occupancy_eval_gap.md`)",
            "runs as Ray tasks of --threads CPUs each, as many at once as the machine has CPUs (seconds per iteration are under that load); `paper` rows: the paper's Table 3 (512^3, 200 epochs)",
        ],
        recorded_methods(record),
        [("iou", "IoU", "{:.3f}")],
        [m.stem for m in args.meshes],
        PAPER,
        curve_at=args.curve_at,
        equal_time=True,
    )


if __name__ == "__main__":
    main(tyro.cli(Args))
