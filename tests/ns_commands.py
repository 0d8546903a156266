"""Helpers of the tests that run nerfstudio's commands on finished runs of our methods."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import imageio.v2 as imageio
import numpy as np

BIN = Path(sys.executable).parent


def run_ns(command: str, *args, timeout: int = 900) -> subprocess.CompletedProcess:
    """Runs ``ns-COMMAND args`` from this environment; asserts it exited 0 without a traceback."""
    done = subprocess.run(
        [str(BIN / f"ns-{command}"), *map(str, args)], capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr, (done.stdout[-2000:], done.stderr[-3000:])
    return done


def ns_in_process(command: str, *args) -> None:
    """``ns-COMMAND args`` (``render`` or ``export``) in this process: the command's own argument parsing (tyro on
    nerfstudio's ``Commands``) and ``main``, what the console script calls, without a new interpreter's imports and
    method discovery (several seconds each). The console scripts themselves run through :func:`run_ns` in the same
    tests."""
    import importlib

    import tyro

    module = importlib.import_module(
        {"render": "nerfstudio.scripts.render", "export": "nerfstudio.scripts.exporter"}[command]
    )
    tyro.cli(module.Commands, args=[str(a) for a in args]).main()


def assert_dataset_render_matches_eval(config: Path, tmp_path: Path) -> None:
    """``ns-render dataset`` (every output of the test view; its parser in this process, the ``ns-render`` script
    itself runs in the video tests) and ``ns-eval --render-output-path`` (ground truth |
    render) on the run of ``config``: the two renders of the view agree up to JPEG rounding, and differ from the
    ground truth (the control: a comparison that could not fail would also pass against it)."""
    run_ns("eval", "--load-config", config, "--output-path", tmp_path / "eval.json", "--render-output-path",
           tmp_path / "eval")  # fmt: skip
    ns_in_process(
        "render", "dataset", "--load-config", config, "--output-path", tmp_path / "renders", "--split", "test"
    )
    frames = tmp_path / "renders" / "test"
    # nerfstudio writes test/NAME/VIEW.jpg, or test/NAME.jpg when the split has one view
    written = {p.stem if p.parent == frames else p.parent.name for p in frames.rglob("*.jpg")}
    assert {"rgb", "depth", "accumulation", "gt-rgb"} <= written, written

    def first_view(name: str) -> np.ndarray:
        path = frames / f"{name}.jpg" if (frames / f"{name}.jpg").exists() else sorted((frames / name).glob("*"))[0]
        return imageio.imread(path)[..., :3].astype(np.float64) / 255

    rendered, ground_truth = first_view("rgb"), first_view("gt-rgb")
    combined = imageio.imread(tmp_path / "eval" / "eval_img_0000.png")[..., :3].astype(np.float64) / 255
    width = rendered.shape[1]
    evaluated = combined[:, -width:]  # the model's final render is the last panel of nerfstudio's "img"
    assert evaluated.shape == rendered.shape
    difference = np.abs(evaluated - rendered).mean()
    assert difference < 0.02, difference
    assert np.abs(ground_truth - rendered).mean() > 3 * difference + 0.01
