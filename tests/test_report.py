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
