"""The report command: every results table of the docs and the README, generated from ``benchmarks/results/``.

    .venv/bin/python -m benchmarks.report            # writes docs/generated/*.md and README.md's results block
    .venv/bin/python -m benchmarks.report --check    # changes nothing; exit 1 when a committed table is stale

Each table is one function of the committed result files (JSON), so a number in the docs is never typed by hand:
the pages include ``docs/generated/NAME.md`` (MyST ``{include}``), and README.md holds the summary between
``<!-- report:summary -->`` markers. ``tests/test_report.py`` fails when a committed table differs from what this
command makes now.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
GENERATED = ROOT / "docs" / "generated"
README = ROOT / "README.md"
ANALYSIS = ROOT / "docs" / "analysis"
DEMO = ROOT / "docs" / "demo.json"
MARKERS = ("<!-- report:summary -->", "<!-- /report:summary -->")


def _load(name: str, root: Path) -> dict:
    return json.loads((root / name).read_text())


def _table(header: Sequence[str], rows: List[Sequence[str]], align: str) -> str:
    """A markdown table; ``align`` has one letter per column, ``l`` or ``r``."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _source(*names: str) -> str:
    return "Source: " + ", ".join(f"`benchmarks/results/{n}`" for n in names) + "."


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _per_image_rows(cases: Sequence[str], methods: Sequence[str], value: Callable[[str, str], float]) -> List[list]:
    """One row per case and a ``mean`` row of ``value(case, method)``, the best of each row in bold."""
    rows = []
    for case in [*cases, "mean"]:
        vals = [_mean([value(c, m) for c in cases]) if case == "mean" else value(case, m) for m in methods]
        rows.append([case, *[f"**{v:.2f}**" if v == max(vals) else f"{v:.2f}" for v in vals]])
    return rows


#: the paper's methods the reproduction page's Kodak tables show
KODAK_SHOWN = ["relu", "relu+cn", "pe", "pe+bn", "pe+cn", "siren"]


def kodak_best(root: Path) -> str:
    """Best PSNR (8-bit, the authors' metric) per Kodak image and the mean, for the methods the docs discuss."""
    data = _load("image_kodak.json", root)
    cases = sorted({r["case"] for r in data["runs"]})
    best = {(r["case"], r["method"]): r["psnr_best"] for r in data["runs"]}
    rows = _per_image_rows(cases, KODAK_SHOWN, lambda c, m: best[(c, m)])
    meta = data["meta"]
    note = f"\n{meta['setting']}; {meta['date']}. {_source('image_kodak.json')}\n"
    return _table(["image", *KODAK_SHOWN], rows, "l" + "r" * len(KODAK_SHOWN)) + note


def kodak_equal_time(root: Path) -> str:
    """:func:`kodak_best`'s methods at equal training time: the best PSNR each reached within the fastest one's
    training time on each image, time = iteration x the method's measured seconds per iteration."""
    from benchmarks.task_tables import best_within, time_budget

    data = _load("image_kodak.json", root)
    cases = sorted({r["case"] for r in data["runs"]})
    by = {(r["case"], r["method"]): r for r in data["runs"]}
    cost = data["timing"]["seconds_per_iter"]
    budget = {c: time_budget(data, [by[(c, m)] for m in KODAK_SHOWN]) for c in cases}
    fastest = min(KODAK_SHOWN, key=cost.__getitem__)
    rows = _per_image_rows(cases, KODAK_SHOWN, lambda c, m: best_within(data, by[(c, m)], budget[c], "psnr"))
    timing = data["timing"]["meta"]
    relative = ", ".join(f"{m} {cost[m] / cost[fastest]:.2f}" for m in KODAK_SHOWN if m != fastest)
    note = (
        f"\nBest training PSNR within {fastest}'s training time ("
        + ", ".join(f"{c} {budget[c]:.0f} s" for c in cases)
        + f"), time = iteration x each method's seconds per iteration measured on its own: `{timing['command']}`, "
        f"{timing['date']}: {timing['setting']}. Seconds per iteration relative to {fastest}: {relative}. "
        f"{_source('image_kodak.json')}\n"
    )
    return _table(["image", *KODAK_SHOWN], rows, "l" + "r" * len(KODAK_SHOWN)) + note


#: the later baselines' table: the reference methods of the paper, then the later ones with their normalized variants
LATER = ["relu", "relu+cn", "pe", "pe+cn", "siren", "mfn", "wire"]
LATER += ["finer", "finer+cn", "gauss", "gauss+cn", "hash", "hash+bn", "hash+ln", "hash+gn", "hash+cn"]


def _later_table(
    data: dict, metrics: Sequence[Tuple[str, str, str]], key: str, fmt: str, reached: str, case: str, script: str
) -> Tuple[str, str]:
    """The later baselines' table of one task record: per method (:data:`LATER` order, those with every case), its
    parameters, the mean over the cases of each of ``metrics`` (``(key, name, format)``), the mean of the best
    logged training ``key`` within the fastest timed method's time on each case (time = iteration x the method's
    measured seconds per iteration, the record's ``timing``; ``-`` untimed) and that cost. Returns the table and
    the sentence saying so (``reached``: what was cut at the budget, ``case``: the cases' noun, ``script``: the
    benchmark that measures the costs)."""
    from benchmarks.task_tables import best_within, time_budget

    cases = sorted({r["case"] for r in data["runs"]})
    by = {(r["case"], r["method"]): r for r in data["runs"]}
    methods = [m for m in LATER if all((c, m) in by for c in cases)]
    cost = data.get("timing", {}).get("seconds_per_iter", {})
    timed = [m for m in methods if m in cost]
    budgets = {c: time_budget(data, [by[(c, m)] for m in timed]) for c in cases} if timed else {}

    def at_budget(m: str) -> str:
        if m not in timed:
            return "-"
        values = [best_within(data, by[(c, m)], budgets[c], key) for c in cases]
        return fmt.format(_mean(values))

    rows = []
    for m in methods:
        runs = [by[(c, m)] for c in cases]
        means = [f.format(_mean([r[k] for r in runs])) for k, _, f in metrics]
        rows.append([m, f"{runs[0]['params']:,}", *means, at_budget(m), f"{cost[m]:.3f}" if m in cost else "-"])
    header = ["method", "parameters", *[name for _, name, _ in metrics], f"{metrics[0][1]}, equal time", "s / iter"]
    budget = ", ".join(f"{c} {budgets[c]:.0f} s" for c in cases) if budgets else "none timed yet"
    sentence = (
        f"Equal time: the best {reached} each method reached within the training time of the fastest timed method on "
        f"the same {case} ({budget}), time = iteration x the method's seconds per iteration measured on its own "
        f"(`{script} --retime`); `-`: not timed yet."
    )
    return _table(header, rows, "l" + "r" * (len(header) - 1)), sentence


def kodak_later(root: Path) -> str:
    """The later baselines on the Kodak setting (``image_kodak.json``), :func:`_later_table`: mean over the images
    of parameters, best and final PSNR, SSIM, best PSNR at equal time and seconds per iteration."""
    data = _load("image_kodak.json", root)
    metrics = [("psnr_best", "PSNR best", "{:.2f}"), ("psnr", "PSNR final", "{:.2f}"), ("ssim", "SSIM", "{:.3f}")]
    table, equal_time = _later_table(data, metrics, "psnr", "{:.2f}", "PSNR", "image", "image_kodak.py")
    images = sorted({r["case"] for r in data["runs"]})
    note = (
        f"\nMean over {', '.join(images)}; {data['meta']['setting']}. {equal_time} Every later method at its authors' "
        f"learning rate, the normalized ones at the paper's 1e-2. {_source('image_kodak.json')}\n"
    )
    return table + note


def occupancy_later(root: Path) -> str:
    """The later baselines on the occupancy setting (``occupancy.json``), :func:`_later_table`: mean IoU over the
    meshes on the grid, and the best training-batch IoU at equal time."""
    data = _load("occupancy.json", root)
    metrics = [("iou", "IoU", "{:.3f}")]
    table, equal_time = _later_table(
        data, metrics, "iou", "{:.3f}", "IoU on the training batches", "mesh", "occupancy.py"
    )
    meshes = sorted({r["case"] for r in data["runs"]})
    note = (
        f"\nMean over {', '.join(meshes)}; {data['meta']['setting']}; every method at the task's learning rate. "
        f"{equal_time} {_source('occupancy.json')}\n"
    )
    return table + note


#: the comparisons of the "does CN still help?" table: (method, reference), read as method minus reference
NORM_GAINS = [
    ("finer+cn", "finer"),
    ("gauss+cn", "gauss"),
    ("hash+cn", "hash"),
    ("hash+bn", "hash"),
    ("hash+ln", "hash"),
    ("hash+gn", "hash"),
    ("pe+cn", "finer"),
    ("pe+cn", "gauss"),
    ("pe+cn", "hash"),
    ("pe+cn", "siren"),
]


def _gain(data: dict, method: str, reference: str, metric: str, key: str, equal_time: bool) -> Tuple[float, int]:
    """Mean over the cases both methods ran of ``method``'s value minus ``reference``'s, and the number of cases;
    ``equal_time``: the best logged training ``key`` within the faster of the two methods' time on each case
    (iteration x measured cost; both must be timed), else the final ``metric``."""
    from benchmarks.task_tables import best_within, time_budget

    by = {(r["case"], r["method"]): r for r in data["runs"]}
    cost = data.get("timing", {}).get("seconds_per_iter", {})
    cases = sorted(c for c in {r["case"] for r in data["runs"]} if (c, method) in by and (c, reference) in by)
    if not cases or (equal_time and not (method in cost and reference in cost)):
        return float("nan"), 0
    diffs = []
    for c in cases:
        a, b = by[(c, method)], by[(c, reference)]
        if equal_time:
            budget = time_budget(data, (a, b))
            diffs.append(best_within(data, a, budget, key) - best_within(data, b, budget, key))
        else:
            diffs.append(a[metric] - b[metric])
    return _mean(diffs), len(cases)


def norm_gains(root: Path) -> str:
    """Does CN still help? For each pair of :data:`NORM_GAINS`, the difference in the Kodak (best PSNR) and the
    occupancy (IoU) benchmarks, at equal iterations and at equal time, averaged over the cases both ran."""
    kodak, occupancy = _load("image_kodak.json", root), _load("occupancy.json", root)

    def cell(data: dict, method: str, reference: str, metric: str, key: str, equal_time: bool, fmt: str) -> str:
        value, n = _gain(data, method, reference, metric, key, equal_time)
        return "-" if n == 0 else f"{fmt.format(value)} ({n})"

    rows = [
        [
            f"{m} - {ref}",
            cell(kodak, m, ref, "psnr_best", "psnr", False, "{:+.2f}"),
            cell(kodak, m, ref, "psnr_best", "psnr", True, "{:+.2f}"),
            cell(occupancy, m, ref, "iou", "iou", False, "{:+.3f}"),
            cell(occupancy, m, ref, "iou", "iou", True, "{:+.3f}"),
        ]
        for m, ref in NORM_GAINS
    ]
    header = ["difference", "Kodak PSNR best (dB)", "Kodak, equal time", "occupancy IoU", "occupancy, equal time"]
    note = (
        "\nPositive: the first method is ahead. In brackets: the number of images / meshes both methods ran (the "
        "mean is over those); `-`: no case yet, or (equal time) a method not yet timed. Equal time: the best logged "
        "training PSNR / training-batch IoU within the faster method's training time on each case, time = iteration "
        "x the method's measured seconds per iteration. Settings: the two tables above. "
        f"{_source('image_kodak.json', 'occupancy.json')}\n"
    )
    return _table(header, rows, "lrrrr") + note


def mipnerf_lego(root: Path) -> str:
    """The 600-step lego comparison of the five Mip-NeRF methods."""
    data = _load("mipnerf_lego.json", root)
    rows = []
    for name in data["quality"]:
        q, t = data["quality"][name], data["timing"][name]
        label = "mipnerf (nerfstudio)" if name == "mipnerf" else name
        rows.append(
            [
                label,
                f"{t['s_per_iter']:.3f}",
                f"{t['ratio']:.2f}",
                f"{q['equal_iters']['psnr']:.2f}",
                f"{q['equal_iters']['fine_ssim']:.3f}",
                q["equal_time"]["steps"],
                f"{q['equal_time']['psnr']:.2f}",
            ]
        )
    header = [
        "method",
        "s/iter",
        "x mipnerf",
        "PSNR @ 600",
        "SSIM @ 600",
        "steps in mipnerf's time",
        "PSNR @ equal time",
    ]
    args = data["args"]
    note = (
        f"\nlego at {data['resolution']}, {args['steps']} steps, {args['test_images']} test views, seed {args['seed']};"
        f" {data['machine']}. {_source('mipnerf_lego.json')}\n"
    )
    return _table(header, rows, "lrrrrrr") + note


def _long_runs(prefix: str, methods: Sequence[str], every: int, root: Path) -> str:
    """A baseline and its normalized twin from ``benchmarks/blender_long.py``: test view 0 every ``every`` steps, then
    the mean of the final views; with an equal-time line when the runs recorded their training seconds."""
    from nerf_norm.nerfstudio.experiment import final_ssim  # the one reading of the scores

    runs = {m: _load(f"{prefix}_{m}.json", root) for m in methods}
    steps = [e["step"] for e in runs[methods[0]]["evals"] if e["step"] % every == 0]
    rows = []
    for step in steps:
        cells = []
        for m in runs:
            e = next((e for e in runs[m]["evals"] if e["step"] == step), None)
            view = e.get("per_view", {}).get("0", e) if e else None
            cells.append(f"{view['psnr']:.2f} / {final_ssim(view):.3f}" if view else "-")
        rows.append([step, *cells])
    last = {m: runs[m]["evals"][-1] for m in runs}
    final_views = " and ".join(runs[methods[0]]["evals"][-1]["per_view"])  # the views scored at the last step
    rows.append(
        [
            f"{steps[-1]}, mean of views {final_views}",
            *[f"{e['psnr']:.2f} / {final_ssim(e):.3f}" for e in last.values()],
        ]
    )
    meta = runs[methods[0]]["meta"]
    base = runs[methods[0]]["evals"][-1]
    equal_time = []
    for m in methods[1:]:  # the last evaluation (view 0) within the baseline's training seconds
        within = [e for e in runs[m]["evals"] if e["seconds"] <= base["seconds"]]
        if within:
            e = within[-1]
            view = e.get("per_view", {}).get("0", e)
            equal_time.append(
                f"Within {methods[0]}'s {base['seconds']:.0f} training seconds {m} reached step {e['step']} "
                f"({view['psnr']:.2f} / {final_ssim(view):.3f} on view 0; both trained side by side)."
            )
    note = f"\n{meta['setting']}; {meta['date']}. {' '.join(equal_time)} {_source(*(f'{prefix}_{m}.json' for m in runs))}\n"
    header = ["step", *[f"{m} PSNR / SSIM (view 0)" for m in runs]]
    return _table(header, rows, "r" + "l" * len(runs)) + note


def mipnerf_lego_long(root: Path) -> str:
    """mipnerf vs mipnerf-cn on lego at 200x200: view 0 every 1000 steps, then the mean of views 0 and 100."""
    return _long_runs("mipnerf_lego_long", ("mipnerf", "mipnerf-cn"), 1000, root)


def nerfacto_lego(root: Path) -> str:
    """nerfacto vs nerfacto-cn on lego at 200x200: view 0 every 500 steps, then the mean of views 0 and 100."""
    return _long_runs("nerfacto_lego", ("nerfacto", "nerfacto-cn"), 500, root)


def nerfacto_scene(root: Path) -> str:
    """nerfacto vs nerfacto-cn on the generated scene at 128x128: view 0 every 500 steps, then views 0 and 2."""
    return _long_runs("nerfacto_scene", ("nerfacto", "nerfacto-cn"), 500, root)


def neus_bunny(root: Path) -> str:
    """Symmetric chamfer of the SDF-network norms on the generated bunny."""
    data = _load("neus_bunny.json", root)
    at = {}
    for rec in data["placement"] + data["comparison"]:
        if rec["norm_in"] == "sdf":
            at.setdefault(rec["norm"], {})[rec["steps"]] = rec
    rows = []
    for norm in ("none", "cn", "bn", "gn", "ln"):
        recs = at.get(norm, {})

        def chamfer(steps: int) -> str:
            rec = recs.get(steps)
            if rec is None:
                return ""
            value = rec.get("chamfer_mm")
            return "surface lost" if value is None else f"{value:.2f}"

        rows.append(["none (NeuS)" if norm == "none" else norm, chamfer(100), chamfer(600)])
    s = data["scene"]
    note = (
        f"\n{s['mesh']} at {s['width']}x{s['height']}, {s['views']} views, {s['world_radius_mm']:g} mm object; chamfer "
        f"in mm (initial sphere: {data['initial_after_1_step']['chamfer_mm']:.2f}); {data['date']}, {data['machine']}."
        f" The run's seconds per iteration are in the file but are no speed measurement (other benchmarks shared the "
        f"machine); the step-cost table is. {_source('neus_bunny.json')}\n"
    )
    return _table(["SDF-network norm", "chamfer @ 100 steps", "chamfer @ 600 steps"], rows, "lrr") + note


def step_cost(root: Path) -> str:
    """Seconds per training step of each normalized method against its plain counterpart."""
    data = _load("step_cost.json", root)
    rows = []
    for pair, methods in data["pairs"].items():
        for name, rec in methods.items():
            rows.append([pair, name, f"{rec['s_per_step']:.3f}", f"{rec['ratio']:.2f}"])
    note = f"\n`{data['command']}`; {data['date']}, {data['machine']}. {_source('step_cost.json')}\n"
    return _table(["pair", "method", "s / step", "x plain"], rows, "llrr") + note


def norm_speed(root: Path) -> str:
    """One Adam iteration of a 10x28 ReLU MLP with each norm implementation (``benchmarks/norm_speed.py``)."""
    data = _load("norm_speed.json", root)
    rows = [
        [r["name"], f"{r['ms_median']:.1f}", f"{r['ratio_to_none']:.2f}", f"{r['peak_rss_mb']:.0f}", r["description"]]
        for r in data["rows"]
    ]
    meta = data["meta"]
    note = (
        f"\n{meta['setting']}. `{meta['command']}`; {meta['date']}, {meta['machine']}. {_source('norm_speed.json')}\n"
    )
    return _table(["config", "ms / iter", "x plain MLP", "peak RSS (MB)", "what"], rows, "lrrrl") + note


def ntk_statistics(root: Path) -> str:
    """NTK eigenvalue statistics per encoding and norm (``nerf-norm ntk``, docs/analysis/ntk)."""
    data = json.loads((ANALYSIS / "ntk" / "ntk.json").read_text())
    labels = {"none": "none", "bn": "BN", "ln": "LN", "gn": "GN", "cn": "CN"}
    rows = []
    for enc, per in data["statistics"].items():
        for norm, s in per.items():
            rows.append(
                [
                    enc,
                    labels.get(norm, norm),
                    f"{s['mean']:.3g}",
                    f"{s['relative_variance']:.3g}",
                    f"{s['max_over_mean']:.3g}",
                    f"{s['median']:.2g}",
                    f"{s['max_over_median']:.2g}",
                ]
            )
    st = data["settings"]
    note = (
        f"\n{st['arch']} MLP, T = {st['samples']} points on [-1, 1), seed {st['seed']}; {data['machine']}. "
        "Source: `docs/analysis/ntk/ntk.json`.\n"
    )
    return _table(["input", "norm", "mean m", "v / m^2", "max / m", "median", "max / median"], rows, "llrrrrr") + note


def _equal_time_chamfer(prefix: str, methods: Sequence[str], scenes: Sequence[str], root: Path) -> str:
    """A NeuS-family pair at equal training time: chamfer at the last evaluation and how the evaluations compare."""
    base, normed = methods
    rows = []
    for scene in scenes:
        runs = {m: _load(f"{prefix}_{scene}_{m}.json", root)["evals"] for m in methods}
        pairs = [(a, b) for a, b in zip(runs[base], runs[normed]) if a["seconds"] > 0]
        scored = [
            (a["chamfer_mm"], b["chamfer_mm"]) for a, b in pairs if None not in (a["chamfer_mm"], b["chamfer_mm"])
        ]
        better = sum(1 for a, b in scored if b < a - 0.005)
        worse = sum(1 for a, b in scored if b > a + 0.005)
        missing = len(pairs) - len(scored)
        tied = len(scored) - better - worse
        last = {m: runs[m][-1] for m in runs}
        cd = lambda e: "no surface" if e["chamfer_mm"] is None else f"{e['chamfer_mm']:.2f}"  # noqa: E731
        rows.append(
            [
                scene,
                f"{last[base]['seconds']:.0f}",
                f"{cd(last[base])} / {cd(last[normed])}",
                f"{better} / {worse} / {tied} / {missing}",
            ]
        )
    header = [
        "scene",
        "last evaluation (s)",
        f"chamfer there: {base} / {normed} (mm)",
        f"{normed} better / worse / tied / no surface",
    ]
    names = [f"{prefix}_{s}_{m}.json" for s in scenes for m in methods]
    return _table(header, rows, "lrll") + "\nTied: within 0.005 mm. " + _source(*names) + "\n"


def neus_equal_time(root: Path) -> str:
    """neus vs neus-cn at equal training time on the generated bunny and dragon."""
    return _equal_time_chamfer("neus_equal_time", ("neus", "neus-cn"), ("bunny", "dragon"), root)


def neus_facto_equal_time(root: Path) -> str:
    """neus-facto vs neus-facto-cn at equal training time on the generated bunny."""
    return _equal_time_chamfer("neus_facto_equal_time", ("neus-facto", "neus-facto-cn"), ("bunny",), root)


def occupancy_meshes(root: Path) -> str:
    """Occupancy IoU per mesh for the methods the docs discuss, and the best method on each mesh."""
    data = _load("occupancy.json", root)
    iou = {(r["case"], r["method"]): r["iou"] for r in data["runs"]}
    cases = sorted({r["case"] for r in data["runs"]})
    methods = ["pe+cn", "pe+bn", "pe", "relu+cn", "relu"]
    rows = []
    for case in cases:
        best = max((v, m) for (c, m), v in iou.items() if c == case)
        rows.append([case, f"{best[1]} {best[0]:.3f}", *[f"{iou[(case, m)]:.3f}" for m in methods]])
    meta = data["meta"]
    note = f"\n{meta['setting']}; {meta['date']}. {_source('occupancy.json')}\n"
    return _table(["mesh", "best here", *methods], rows, "ll" + "r" * len(methods)) + note


def demo(root: Path) -> str:
    """The main job's committed run (``docs/demo.json``): steps and test PSNR / SSIM of both methods."""
    data = json.loads(DEMO.read_text())
    rows = [
        [name, r["steps"], f"{r['psnr']:.2f}", f"{r['ssim']:.3f}", " / ".join(f"{v:.2f}" for v in r["view_psnr"])]
        for name, r in data["methods"].items()
    ]
    s = data["settings"]
    p = data.get("provenance")
    made = (
        f"`{p['command']}`, {p['date']}, commit {p['commit']}, {p['machine']['cpu']}, {p['machine']['cores']} cores"
        if p
        else "Provenance not recorded (the run predates its recording in demo.json)"
    )
    note = (
        f"\n{s['seconds']:g} s of training each, {s['rays']} rays of {s['samples']} + {s['samples']} samples, test "
        f"views {s['views']}; {data['wall_seconds']:.0f} s wall-clock for both trainings with their evaluations. "
        f"{made}. Source: `docs/demo.json`.\n"
    )
    return _table(["method", "steps", "PSNR (dB)", "SSIM", "PSNR per view"], rows, "lrrrl") + note


def summary(root: Path) -> str:
    """README's one table: the baseline and its cross-normalized twin on each task, at this project's budgets."""
    kodak = _load("image_kodak.json", root)
    best = {}
    for r in kodak["runs"]:
        best.setdefault(r["method"], []).append(r["psnr_best"])
    lego = {m: _load(f"mipnerf_lego_long_{m}.json", root)["evals"][-1] for m in ("mipnerf", "mipnerf-cn")}
    nerfacto = {m: _load(f"nerfacto_lego_{m}.json", root)["evals"][-1] for m in ("nerfacto", "nerfacto-cn")}
    bunny = {r["norm"]: r["chamfer_mm"] for r in _load("neus_bunny.json", root)["comparison"]}
    occ = _load("occupancy.json", root)
    iou = {}
    for r in occ["runs"]:
        iou.setdefault(r["method"], []).append(r["iou"])
    rows = [
        [
            "Mip-NeRF, lego 200x200, 5000 steps (PSNR)",
            "mipnerf",
            f"{lego['mipnerf']['psnr']:.2f}",
            f"{lego['mipnerf-cn']['psnr']:.2f}",
            "`mipnerf_lego_long_*.json`",
        ],
        [
            f"nerfacto, lego 200x200, {nerfacto['nerfacto']['step']} steps (PSNR)",
            "nerfacto",
            f"{nerfacto['nerfacto']['psnr']:.2f}",
            f"{nerfacto['nerfacto-cn']['psnr']:.2f}",
            "`nerfacto_lego_*.json`",
        ],
        [
            "NeuS, generated bunny, 600 steps (chamfer mm, lower is better)",
            "neus",
            f"{bunny['none']:.2f}",
            f"{bunny['cn']:.2f}",
            "`neus_bunny.json`",
        ],
        [
            f"images, {len(best['pe+cn'])} Kodak images 192x128, 10x28 (best PSNR)",
            "pe",
            f"{_mean(best['pe']):.2f}",
            f"{_mean(best['pe+cn']):.2f}",
            "`image_kodak.json`",
        ],
        [
            f"occupancy, {len(iou['pe+cn'])} Stanford meshes, 2x256 (IoU)",
            "pe",
            f"{_mean(iou['pe']):.3f}",
            f"{_mean(iou['pe+cn']):.3f}",
            "`occupancy.json`",
        ],
    ]
    return _table(
        ["task (CPU budget)", "baseline method", "baseline", "with CN", "source (benchmarks/results/)"], rows, "llrrl"
    )


#: every generated table: name -> function of the results folder
TABLES: Dict[str, Callable[[Path], str]] = {
    "summary": summary,
    "kodak_best": kodak_best,
    "kodak_equal_time": kodak_equal_time,
    "kodak_later": kodak_later,
    "occupancy_later": occupancy_later,
    "norm_gains": norm_gains,
    "mipnerf_lego": mipnerf_lego,
    "mipnerf_lego_long": mipnerf_lego_long,
    "nerfacto_lego": nerfacto_lego,
    "nerfacto_scene": nerfacto_scene,
    "neus_bunny": neus_bunny,
    "step_cost": step_cost,
    "norm_speed": norm_speed,
    "ntk_statistics": ntk_statistics,
    "neus_equal_time": neus_equal_time,
    "neus_facto_equal_time": neus_facto_equal_time,
    "occupancy_meshes": occupancy_meshes,
    "demo": demo,
}


def render_all(results: Path = RESULTS) -> Dict[Path, str]:
    """Every generated file and its content (README.md with its summary block replaced)."""
    files = {GENERATED / f"{name}.md": fn(results) for name, fn in TABLES.items()}
    readme = README.read_text()
    start, end = readme.index(MARKERS[0]), readme.index(MARKERS[1])
    block = f"{MARKERS[0]}\n{files[GENERATED / 'summary.md']}{MARKERS[1]}"
    files[README] = readme[:start] + block + readme[end + len(MARKERS[1]) :]
    return files


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a committed table is stale")
    args = parser.parse_args(argv)
    stale = []
    for path, text in render_all().items():
        if not path.exists() or path.read_text() != text:
            stale.append(path)
            if not args.check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    for path in stale:
        print(f"{'stale' if args.check else 'wrote'}: {path.relative_to(ROOT)}")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
