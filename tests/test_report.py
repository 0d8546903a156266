"""The report command: every generated table (docs/generated/*.md, README.md's results block) is what
``python -m benchmarks.report`` makes now from the committed result files, byte for byte."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_committed_tables_are_what_the_report_command_makes():
    sys.path.insert(0, str(ROOT))
    from benchmarks.report import render_all

    stale = [str(path.relative_to(ROOT)) for path, text in render_all().items() if path.read_text() != text]
    assert not stale, f"regenerate with `python -m benchmarks.report`: {stale}"


def test_check_mode_fails_on_a_stale_table(tmp_path, monkeypatch, capsys):
    """``--check`` exits 1 when a table differs and writes nothing; without it, the table is rewritten."""
    import shutil

    sys.path.insert(0, str(ROOT))
    from benchmarks import report

    generated = tmp_path / "generated"
    shutil.copytree(report.GENERATED, generated)
    readme = tmp_path / "README.md"
    shutil.copy(report.README, readme)
    monkeypatch.setattr(report, "GENERATED", generated)
    monkeypatch.setattr(report, "README", readme)
    monkeypatch.setattr(report, "ROOT", tmp_path)
    assert report.main(["--check"]) == 0
    table = generated / "step_cost.md"
    table.write_text(table.read_text().replace("1.16", "1.61"))
    assert report.main(["--check"]) == 1 and "stale: generated/step_cost.md" in capsys.readouterr().out
    assert "1.61" in table.read_text()  # --check wrote nothing
    assert report.main([]) == 0 and "1.61" not in table.read_text() and report.main(["--check"]) == 0


def _provenance_of(record) -> dict:
    """Where a result file keeps its provenance: ``meta``, ``provenance``, the record itself, or (JSON lines) the
    first row's ``provenance``."""
    if isinstance(record, list):
        record = record[0]
    for key in ("meta", "provenance"):
        if isinstance(record.get(key), dict):
            return record[key]
    return record


def test_every_result_file_records_its_provenance():
    """Command, date, commit, machine and torch threads in every committed result (for runs older than the rule,
    added afterwards from git history and saying so, or marked "not recorded": never invented)."""
    import json

    files = sorted([*ROOT.glob("benchmarks/results/*.json*"), *ROOT.glob("experiments/*/*.json")])
    assert len(files) > 30
    missing = {}
    for path in files:
        text = path.read_text()
        record = (
            [json.loads(line) for line in text.splitlines() if line.strip()]
            if path.suffix == ".jsonl"
            else json.loads(text)
        )
        meta = _provenance_of(record)
        machine = meta.get("machine")
        threads = "torch_threads" in meta or "thread" in str(machine)
        lacking = [key for key in ("command", "date", "commit", "machine") if not meta.get(key)]
        lacking += [] if threads else ["threads"]
        if lacking:
            missing[str(path.relative_to(ROOT))] = lacking
    assert not missing, missing


def _run(case: str, method: str, iterations, psnr) -> dict:
    return {
        "case": case,
        "method": method,
        "history": {"iteration": iterations, "seconds": [0.0] * len(psnr), "psnr": psnr},
    }


def test_retime_stores_the_median_slope_of_interleaved_short_runs(tmp_path):
    """The equal-time clock of the task benchmarks: each method's cost is the median over rounds of its short runs'
    slope (seconds between the first and last logged point over their iterations), the order reversed every other
    round; runs already in the file are kept."""
    import json

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import task_tables

    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"runs": [_run("a", "relu", [0, 10], [1.0, 2.0])], "meta": {}}))
    order, slopes = [], {"relu": iter([0.1, 0.3, 0.2]), "pe+cn": iter([0.5, 0.4, 0.6])}

    def short_run(method, out):
        order.append(method)
        slope = next(slopes[method])
        return {"iteration": [0, 20, 40], "seconds": [7.0, 7.0 + 20 * slope, 7.0 + 40 * slope]}  # 7 s of set-up

    record = task_tables.retime(path, "bench", ["relu", "pe+cn"], 3, short_run, 1, "40-step runs")
    assert order == ["relu", "pe+cn", "pe+cn", "relu", "relu", "pe+cn"]
    cost = json.loads(path.read_text())["timing"]["seconds_per_iter"]
    assert cost == record["timing"]["seconds_per_iter"]
    assert abs(cost["relu"] - 0.2) < 1e-12 and abs(cost["pe+cn"] - 0.5) < 1e-12
    assert record["runs"][0]["method"] == "relu" and "40-step runs" in record["timing"]["meta"]["setting"]


def test_equal_time_rows_cut_every_run_at_the_fastest_method_s_time():
    """Budget = the fastest method's total time on the case (iteration x measured cost); each method's value is its
    best logged value within it; the mean row averages the cases; a missing run is ``-``."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import task_tables

    record = {
        "runs": [
            _run("x", "fast", [0, 50, 100], [10.0, 20.0, 30.0]),  # 0.1 s/it: budget 10 s
            _run("x", "slow", [0, 25, 50, 100], [10.0, 25.0, 35.0, 40.0]),  # 0.2 s/it: 0, 5, 10, 20 s
            _run("y", "fast", [0, 100], [5.0, 15.0]),
        ],
        "timing": {"seconds_per_iter": {"fast": 0.1, "slow": 0.2}},
    }
    rows = task_tables.equal_time_rows(record, ["fast", "slow"], ["x", "y"], "psnr", "{:.1f}")
    assert rows[2] == "| x (10 s) | 30.0 | **35.0** |"
    assert rows[3] == "| y (10 s) | **15.0** | - |"
    assert rows[4] == "| mean | **22.5** | - |"
