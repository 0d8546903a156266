"""``nerf-norm sweep`` on an embedded local Ray instance: a 4-cell image grid, a rerun that trains nothing, other
arguments refused in the same folder, and a failing cell that is reported without stopping the others (exit 1)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import squash
from PIL import Image

from nerf_norm.cli import main

pytest.importorskip("ray")

GRID = [
    "--task",
    "image",
    "--methods",
    "relu,relu+cn",
    "--seeds",
    "0,1",
    "--archs",
    "2x16",
    "--iters",
    "15",
    "--cpus",
    "2",
]


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "checker.png"
    y, x = np.mgrid[:24, :24]
    Image.fromarray((((x // 3 + y // 4) % 2) * 200 + 20).astype(np.uint8)).convert("RGB").save(path)
    return path


def _lines(out):
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_grid_then_rerun_then_failing_cell(tmp_path, image, cli_output):
    import ray

    out = tmp_path / "sweep"
    args = ["sweep", *GRID, "--inputs", str(image), "--out", str(out)]
    assert main(args) == 0
    records = _lines(out)
    assert sorted((r["method"], r["seed"]) for r in records) == [
        ("relu", 0),
        ("relu", 1),
        ("relu+cn", 0),
        ("relu+cn", 1),
    ]
    for r in records:
        assert r["task"] == "image" and r["arch"] == "2x16" and r["input"] == str(image)
        assert r["metrics"]["iterations"] == 15 and np.isfinite(r["metrics"]["psnr"]) and r["seconds"] > 0
    table = (out / "table.md").read_text()
    assert "| 2x16 |" in table and "relu+cn" in table
    assert not ray.is_initialized()  # the embedded instance is shut down again
    cli_output()

    # the same arguments again: every cell is found in results.jsonl, Ray is not even started
    assert main(args) == 0
    assert squash("4 already in") in cli_output()
    assert len(_lines(out)) == 4

    # other arguments into the same folder: refused before Ray starts (one folder, one sweep)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    assert main(["sweep", *GRID, "--inputs", f"{image},{broken}", "--out", str(out)]) == 2
    assert squash("already holds results.jsonl, table.md, cells (written by nerf-norm sweep)") in cli_output()
    assert len(_lines(out)) == 4

    # an input that cannot be read: its cells fail with their error, the others finish, the sweep exits 1 and the
    # table marks the mean its failed cell is missing from
    failing = tmp_path / "failing"
    grid = [*GRID[:2], "--methods", "relu", "--seeds", "0", *GRID[6:]]
    assert main(["sweep", *grid, "--inputs", f"{image},{broken}", "--out", str(failing)]) == 1
    text = cli_output()
    # each failed cell is named with its error as it fails and again in the summary
    assert text.count(squash("failed broken")) == 2 and squash("1 of 2 cells done, 1 failed") in text
    assert squash("cannot read image") in text and squash("error: 1 of 2 cells failed") in text, text
    assert len(_lines(failing)) == 1
    assert "| 2x16 | **" in (failing / "table.md").read_text() and "(1/2)" in (failing / "table.md").read_text()


def test_bad_grid_is_refused_before_anything_runs(tmp_path, cli_output):
    assert main(["sweep", "--methods", "relu,nope", "--out", str(tmp_path / "a")]) == 2
    assert "nope" in cli_output()
    assert main(["sweep", "--archs", "2by16", "--out", str(tmp_path / "b")]) == 2
    assert "2by16" in cli_output()
    assert main(["sweep", "--inputs", str(tmp_path / "missing.png"), "--out", str(tmp_path / "c")]) == 2
    assert "missing.png" in cli_output()
    assert main(["sweep", "--out", str(tmp_path / "d"), "--", "--nonsense", "3"]) == 2
    assert squash("the task options after '--' are not valid for image") in cli_output()
    assert not (tmp_path / "a" / "results.jsonl").exists()


def test_input_given_as_a_task_option_is_the_cells_input(tmp_path, image):
    """``-- --image X`` without ``--inputs``: the cells record X (so another image is never taken for done)."""
    from nerf_norm.sweep import SweepCommand, grid, task_command

    cmd = SweepCommand(task="image", methods="relu", out=tmp_path)
    cells = grid(cmd, task_command(cmd, ["--image", str(image)]))
    assert [c.input for c in cells] == [str(image.resolve())]
    assert [c.input for c in grid(cmd, task_command(cmd, []))] == [None]  # the task's bundled default
