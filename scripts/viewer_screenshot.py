#!/usr/bin/env python
"""Open nerfstudio's viewer in a real (headless) Chromium on a finished ``mipnerf-cn-lite`` run of the bundled scene
(or ``--method nerfacto-cn-lite`` / ``neus-cn-lite``), wait until the scene is drawn, and save a screenshot.

``ns-train`` first trains ``--pretrain-steps`` steps (an untrained field renders a grey haze); then
``ns-viewer --load-config`` serves that run, as a user opens a finished run. Nothing races: the viewer stays up
until the render is drawn (or ``--timeout`` runs out), however busy the machine. The browser's camera starts near
the origin (inside the scene), so the script zooms out with the mouse wheel and orbits to look from above, as a
user would, then waits for the full-resolution render (up to ``--sharp-wait`` seconds) and keeps its screenshot.
``ns-viewer`` must still be running then (its render thread did not die), and it is stopped.

The viewer is the browser client nerfstudio serves (viser); Chromium draws it with software WebGL (SwiftShader),
so no GPU or display is needed. "Drawn" means: the 3D canvas shows the render nerfstudio streams to the client,
with the scene's object in it, against the render's white background (see ``drawn_fraction``).

    .venv/bin/python scripts/viewer_screenshot.py --out docs/viewer.png

Needs Debian's ``chromium`` (``apt-get install chromium``; ``scripts/install.sh`` installs it as root) and the
``playwright`` Python package (in the test extra), which drives that Chromium; no browser is downloaded.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Tuple

import numpy as np

# Chromium flags: software WebGL without a GPU, no sandbox when run as root (CI), a fixed window size.
ZOOM_OUT_WHEEL_STEPS = 12
ORBIT_DRAG_PIXELS = 150
SHARP_SIZE = 256  # longer side (px) of the viewer's render at its "Fast" maximum resolution
CHROMIUM_ARGS = [
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--ignore-gpu-blocklist",
    "--no-sandbox",
    "--window-size=960,600",
]


@dataclass
class ViewerCheck:
    """Train a lite method, open the finished run with ns-viewer in headless Chromium, check the render is drawn
    and keep a screenshot."""

    out: Path = Path("docs/viewer.png")
    """where the screenshot goes"""
    method: Literal["mipnerf-cn-lite", "nerfacto-cn-lite", "neus-cn-lite"] = "mipnerf-cn-lite"
    """the method trained (each renders the scene on a white background; see RECIPES)"""
    scene: Optional[Path] = None
    """scene in the method's format (RECIPES); default: the bundled scene, generated into a temporary folder"""
    pretrain_steps: int = 250
    """steps trained before the viewer opens (an untrained field renders a grey haze)"""
    timeout: float = 900.0
    """seconds to wait for the viewer and for the drawn scene (generous: a busy machine renders slowly)"""
    sharp_wait: float = 120.0
    """seconds to wait, once drawn, for the full-resolution render (0: keep the first drawn frame)"""
    min_fraction: float = 0.005
    """fraction of the canvas that must show the scene's object (see drawn_fraction)"""
    chromium: Optional[str] = None
    """Chromium executable; default: chromium or chromium-browser on PATH"""
    load_config: Optional[Path] = None
    """open this finished run (its config.yml, e.g. one of nerf-norm demo's runs) instead of training one"""


@dataclass(frozen=True)
class Recipe:
    """How one method is trained for the check: its ``ns-train`` options, the format the bundled scene is written
    in, and the dataparser subcommand (last on the command line) that reads it."""

    options: Tuple[str, ...] = ()
    scene_format: Literal["blender", "nerfstudio"] = "blender"
    dataparser: Tuple[str, ...] = ()


RECIPES = {
    # the demo's faster-learning sizes (nerf-norm demo): 256 rays of 16 + 16 samples per step
    "mipnerf-cn-lite": Recipe(
        options=(
            "--pipeline.datamanager.train-num-rays-per-batch",
            "256",
            "--pipeline.model.num-coarse-samples",
            "16",
            "--pipeline.model.num-importance-samples",
            "16",
        )
    ),
    "nerfacto-cn-lite": Recipe(),  # its lite preset as registered
    # NeuS renders on black outside its masks (the DTU convention); a capture in nerfstudio's format has no masks and
    # a white background, which the drawn-frame check needs: the scene as the methods pages say to train NeuS on it
    # (scaled by 0.65 into the unit sphere, poses as written), rendered on white
    "neus-cn-lite": Recipe(
        options=("--pipeline.model.background-color", "white"),
        scene_format="nerfstudio",
        dataparser=(
            "nerfstudio-data",
            "--scale-factor",
            "0.65",
            "--eval-mode",
            "filename",
            "--auto-scale-poses",
            "False",
            "--center-method",
            "none",
            "--orientation-method",
            "none",
        ),
    ),
}


def find_chromium(explicit: Optional[str] = None) -> Optional[str]:
    if explicit:
        return explicit
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def drawn_fraction(image: np.ndarray) -> float:
    """How much of ``image`` (``[H, W, 3]`` uint8, the viewer's canvas) is the scene's object, or 0 when the canvas
    does not show a render.

    The viewer's control panel lies over the canvas' right side (dark, with bright buttons and a scrollbar): the
    render is the part left of it, the columns left of the dark column block at the right edge. The empty viewer
    is near-black (#121212) with a small axes gizmo; nerfstudio's render of the scene covers the canvas with its
    white background; an untrained field renders a uniform grey haze. So the render counts as drawn when at least half of
    it is bright (the render's background), and the returned value is the fraction of its pixels clearly darker
    than that background (20 of 255 levels below its median: the object, sphere, slab and small spheres, even in
    the viewer's first coarse, blurred frames; a field that has learned only the background draws none).
    """
    luminance = image[..., :3].astype(np.float32).mean(axis=-1)
    dark = np.median(luminance, axis=0) < 100  # the panel's columns (or the whole empty viewer)
    right, x, gap = len(dark), len(dark) - 1, 0
    while x >= 0 and gap <= 12:  # leftwards through the dark block at the right edge, over a scrollbar or a margin
        if dark[x]:
            right, gap = x, 0
        else:
            gap += 1
        x -= 1
    render = luminance[:, :right]
    if render.size == 0 or (render > 200).mean() < 0.5:
        return 0.0
    return float((render < np.median(render) - 20).mean())


def check(config: ViewerCheck) -> dict:
    """Runs the check; returns ``{"fraction": ..., "seconds_to_draw": ..., "screenshot": ..., "sharp": ...}``.
    Raises ``RuntimeError`` with the log's tail when a step fails."""
    from playwright.sync_api import sync_playwright

    chromium = find_chromium(config.chromium)
    if chromium is None:
        raise RuntimeError("no Chromium found (apt-get install chromium)")
    work = Path(tempfile.mkdtemp(prefix="viewer_check_"))
    recipe = RECIPES[config.method]
    scene = config.scene
    if scene is None:
        from nerf_norm.scenes.blender import BlenderSceneConfig, write_blender_scene
        from nerf_norm.scenes.nerfstudio import write_nerfstudio_scene

        write = write_blender_scene if recipe.scene_format == "blender" else write_nerfstudio_scene
        scene = write(work / "scene", BlenderSceneConfig(resolution=64))
    port = _free_port()
    ns_train = Path(sys.executable).parent / "ns-train"
    common = [
        str(ns_train),
        config.method,
        "--data",
        str(scene),
        "--output-dir",
        str(work / "runs"),
        "--experiment-name",
        "viewer",
        *recipe.options,
    ]
    pretrain = common + [
        "--timestamp",
        "pretrain",
        "--vis",
        "tensorboard",
        "--max-num-iterations",
        str(config.pretrain_steps),
        "--steps-per-save",
        str(config.pretrain_steps),
        *recipe.dataparser,
    ]
    run_config = config.load_config or work / "runs" / "viewer" / config.method / "pretrain" / "config.yml"
    ns_viewer = Path(sys.executable).parent / "ns-viewer"
    cmd = [
        str(ns_viewer),
        "--load-config",
        str(run_config),
        "--viewer.websocket-port",
        str(port),
        "--viewer.websocket-host",
        "127.0.0.1",
        # no training-camera thumbnails: what the canvas shows besides the empty viewer is the render
        "--viewer.max-num-display-images",
        "0",
    ]
    log_path = work / "ns-viewer.log"
    url = f"http://127.0.0.1:{port}/"

    def fail(message: str) -> RuntimeError:
        return RuntimeError(f"{message}; log tail:\n{log_path.read_text()[-3000:]}")

    with open(log_path, "w") as log:
        if config.load_config is None and subprocess.call(pretrain, stdout=log, stderr=subprocess.STDOUT) != 0:
            raise fail("training failed")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
        try:
            start = time.time()
            while True:
                if proc.poll() is not None:
                    raise fail(f"ns-viewer exited ({proc.returncode}) before it answered")
                if time.time() - start > config.timeout:
                    raise fail("the viewer never answered")
                try:
                    with urllib.request.urlopen(url, timeout=5):
                        break
                except OSError:
                    time.sleep(0.5)
            fraction, shot, sharp = 0.0, None, False
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
                page = browser.new_page(viewport={"width": 960, "height": 600})
                page.goto(url)
                canvas = page.wait_for_selector("canvas", timeout=config.timeout * 1000)
                box = canvas.bounding_box()
                page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
                for _ in range(ZOOM_OUT_WHEEL_STEPS):  # dolly out from the origin to see the whole scene
                    page.mouse.wheel(0, 400)
                    time.sleep(0.1)
                # orbit: drag downwards to look at the scene from above (the slab's top, the spheres on it)
                page.mouse.down()
                for k in range(1, 11):
                    page.mouse.move(
                        box["x"] + box["width"] / 2, box["y"] + box["height"] / 2 + ORBIT_DRAG_PIXELS * k / 10
                    )
                    time.sleep(0.05)
                page.mouse.up()
                while time.time() - start < config.timeout and proc.poll() is None:
                    time.sleep(2.0)
                    box = canvas.bounding_box()
                    shot = page.screenshot()
                    fraction = drawn_fraction(_crop(_decode_png(shot), box))
                    if fraction >= config.min_fraction:
                        break
                seconds_to_draw = time.time() - start
                # the first frames are coarse; the viewer then refines the still view up to its maximum resolution
                sharp_until = time.time() + config.sharp_wait
                while fraction >= config.min_fraction and time.time() < sharp_until and proc.poll() is None:
                    match = re.search(r"Resolution:\s*(\d+)\D(\d+)px", page.inner_text("body"))
                    if match and max(int(match.group(1)), int(match.group(2))) >= SHARP_SIZE:
                        time.sleep(2.0)  # let the frame reach the canvas
                        candidate = page.screenshot()
                        if drawn_fraction(_crop(_decode_png(candidate), box)) >= config.min_fraction:
                            shot, sharp = candidate, True
                        break
                    time.sleep(1.0)
                browser.close()
            if shot is None or fraction < config.min_fraction:
                if shot is not None:
                    (work / "last_screenshot.png").write_bytes(shot)
                raise fail(
                    f"the scene was never drawn in the viewer (drawn fraction {fraction:.3f} < "
                    f"{config.min_fraction}; last screenshot: {work / 'last_screenshot.png'})"
                )
            if proc.poll() is not None:
                raise fail(f"ns-viewer exited ({proc.returncode}) while the page was open")
            config.out.parent.mkdir(parents=True, exist_ok=True)
            config.out.write_bytes(shot)
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    return {
        "fraction": fraction,
        "seconds_to_draw": seconds_to_draw,
        "screenshot": str(config.out),
        "work": str(work),
        "sharp": sharp,
    }


def _crop(image: np.ndarray, box: dict) -> np.ndarray:
    x0, y0 = int(box["x"]), int(box["y"])
    return image[y0 : y0 + int(box["height"]), x0 : x0 + int(box["width"])]


def _decode_png(data: bytes) -> np.ndarray:
    import io

    import imageio.v2 as imageio

    return np.asarray(imageio.imread(io.BytesIO(data)))


def main() -> int:
    import tyro

    config = tyro.cli(ViewerCheck)
    try:
        result = check(config)
    except RuntimeError as error:
        print(f"viewer check failed: {error}", file=sys.stderr)
        return 1
    print(
        f"scene drawn after {result['seconds_to_draw']:.0f} s ({100 * result['fraction']:.1f}% of the canvas); "
        f"screenshot: {result['screenshot']} ("
        + ("the full-resolution render" if result["sharp"] else "the first drawn frame")
        + ")"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
