"""Nothing silently wrong, nothing lost, one clear line for every failure (issue 26): replaced inputs, the overwrite
rule, failed sweeps, divergence, out-of-range input, impossible sizes, unwritable outputs, SIGTERM, broken runs
and bad nerfstudio options."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from conftest import squash

from nerf_norm.cli import main
from nerf_norm.errors import UserError
from nerf_norm.outputs import MANIFEST


def _image(path: Path, seed: int = 0, size=(32, 32), dtype=np.uint8) -> Path:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : size[0], 0 : size[1]] / max(size)
    img = np.stack([np.sin((6 + seed) * xx), np.cos(9 * yy), xx * yy], -1) * 0.5 + 0.5
    img = np.clip(img + 0.05 * rng.standard_normal(img.shape), 0, 1)
    iio.imwrite(path, (img * 255).astype(np.uint8) if dtype == np.uint8 else img.astype(dtype))
    return path


def _fit(kind: str, out: Path, *extra: str) -> list:
    tiny = {
        "image": ["--arch", "2x8", "--iters", "3"],
        "ct": ["--arch", "2x8", "--iters", "2", "--size", "16", "--projections", "4"],
    }[kind]
    return [kind, *tiny, "--out", str(out), "--quiet", *extra]


# --- replaced inputs are never mixed with old ones ------------------------------------------------------------


def test_a_run_never_resumes_on_a_replaced_image_of_the_same_size(tmp_path, cli_output):
    image, other = _image(tmp_path / "a.png"), _image(tmp_path / "b.png", seed=1)
    out = tmp_path / "run"
    assert main(_fit("image", out, "--image", str(image))) == 0
    shutil.copy2(other, image)  # same name and size, the other's (older) timestamps: cp -p
    cli_output()
    assert main(_fit("image", out, "--image", str(image), "--iters", "6")) == 2
    assert squash("belongs to a different run (input_sha256") in cli_output()


def test_downscale_cache_follows_replaced_sources_whatever_their_timestamps(tmp_path):
    from PIL import Image

    from nerf_norm.nerfstudio.neus_dataparser import downscaled_copies

    src = tmp_path / "scene" / "000.png"
    src.parent.mkdir()
    Image.fromarray(np.full((8, 8, 3), 10, np.uint8)).save(src)
    cache = tmp_path / "cache"
    (copy,) = downscaled_copies([src], 2, cache)
    assert np.asarray(Image.open(copy)).max() == 10
    replacement = tmp_path / "other.png"
    in_place, new_inode = shutil.copy2, lambda a, b: (os.unlink(b), shutil.copy2(a, b))  # cp -p; tar x / rsync -a
    for copy_over, value in ((in_place, 200), (new_inode, 90)):
        Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(replacement)
        os.utime(replacement, (1_000_000, 1_000_000))  # much older than the cached copy
        copy_over(replacement, src)
        (copy,) = downscaled_copies([src], 2, cache)
        assert np.asarray(Image.open(copy)).max() == value
    stamp = copy.with_suffix(".source.json").stat().st_mtime_ns
    downscaled_copies([src], 2, cache)  # unchanged source: the copy is reused, not rewritten
    assert copy.with_suffix(".source.json").stat().st_mtime_ns == stamp


# --- one overwrite rule ----------------------------------------------------------------------------------------


def test_ntk_refuses_another_runs_outputs_and_overwrite_replaces_them(tmp_path, cli_output):
    out = tmp_path / "ntk"
    args = ["ntk", "--norms", "none", "--encodings", "relu", "--arch", "2x8", "--samples", "16", "--out", str(out)]
    assert main(args) == 0
    assert main(args) == 0  # the same run again: same settings, same numbers
    before = (out / "ntk.json").read_text()
    cli_output()
    assert main([*args, "--seed", "1"]) == 2
    assert squash("already holds") in cli_output() and (out / "ntk.json").read_text() == before
    assert main([*args, "--seed", "1", "--overwrite"]) == 0
    assert json.loads((out / "ntk.json").read_text())["settings"]["seed"] == 1


def test_spectral_dynamics_overwrite_removes_the_other_methods_folders(tmp_path, cli_output):
    out = tmp_path / "sd"
    base = ["spectral-dynamics", "--arch", "2x8", "--iters", "2", "--every", "1", "--samples", "64"]
    base += ["--bands", "2", "--out", str(out)]
    assert main([*base, "--methods", "relu,pe+cn"]) == 0 and (out / "pe+cn").is_dir()
    cli_output()
    assert main([*base, "--methods", "relu"]) == 2
    assert squash("already holds") in cli_output()
    assert main([*base, "--methods", "relu", "--overwrite"]) == 0
    assert not (out / "pe+cn").exists() and (out / "relu" / "metrics.json").is_file()


def test_overwrite_clears_what_another_command_wrote(tmp_path, cli_output):
    out = tmp_path / "o"
    assert main(_fit("ct", out)) == 0 and (out / "sinogram.png").exists()
    image = _image(tmp_path / "a.png")
    cli_output()
    assert main(_fit("image", out, "--image", str(image))) == 2  # the CT run's checkpoint is another run's
    assert main(_fit("image", out, "--image", str(image), "--overwrite")) == 0
    assert not (out / "sinogram.png").exists() and not (out / "error.png").exists()
    assert json.loads((out / MANIFEST).read_text())["command"] == "nerf-norm image"

    scene = tmp_path / "scene"
    assert main(["make-scene", "blender", "--out", str(scene), "--scene.resolution", "8"]) == 0
    assert (scene / "transforms_train.json").exists()
    dtu = ["make-scene", "dtu", "--out", str(scene), "--scene.width", "16", "--scene.height", "12"]
    assert main([*dtu, "--scene.views", "2"]) == 2
    assert main([*dtu, "--scene.views", "2", "--overwrite"]) == 0
    assert not list(scene.glob("transforms_*.json")) and not (scene / "train").exists()
    assert (scene / "cameras_sphere.npz").is_file() and "transforms" not in (scene / "scene.json").read_text()


def test_demo_refuses_a_folder_holding_an_earlier_demo(tmp_path, cli_output):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "demo.json").write_text("{}")
    (out / MANIFEST).write_text(json.dumps({"command": "nerf-norm demo", "outputs": ["demo.json"], "run": None}))
    assert main(["demo", "--out", str(out), "--seconds", "1"]) == 2
    assert squash("already holds demo.json") in cli_output() and (out / "demo.json").read_text() == "{}"
    assert not (out / "scene").exists()  # refused before anything was generated


# --- failures are not reported as success ------------------------------------------------------------------------


def test_divergence_is_caught_before_any_nan(tmp_path, cli_output):
    image = _image(tmp_path / "a.png")
    assert main(["image", "--image", str(image), "--lr", "1e6", "--iters", "50", "--out", str(tmp_path / "o")]) == 2
    text = cli_output()
    assert squash("training diverged: the loss has stayed above 100x its first value") in text, text


def test_out_of_range_float_image_is_said_and_nan_pixels_are_named(tmp_path, cli_output):
    tiff = tmp_path / "hdr.tif"
    values = np.linspace(-500, 500, 32 * 32 * 3, dtype=np.float32).reshape(32, 32, 3)
    iio.imwrite(tiff, values)
    assert main(_fit("image", tmp_path / "o1", "--image", str(tiff))) == 0
    assert squash("values span [-500, 500], outside the expected [0, 1]; they are clipped") in cli_output()

    nan = tmp_path / "nan.tif"
    values = np.full((32, 32, 3), 0.5, np.float32)
    values[3, 4, 1] = np.nan
    iio.imwrite(nan, values)
    for kind in ("image", "ct"):
        assert main(_fit(kind, tmp_path / f"o_{kind}", "--image", str(nan))) == 2
        text = cli_output()
        assert squash("1 pixel(s) with NaN or infinite values (the first at row 3, column 4)") in text, text


def test_mri_refuses_a_centre_larger_than_the_sampling(tmp_path, cli_output):
    args = ["mri", "--center", "0.9", "--sampling", "0.01", "--out", str(tmp_path / "m"), "--iters", "1"]
    assert main(args) == 2
    assert squash("--center 0.9 alone measures") in cli_output()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--", "--downscale", "0"], "--downscale must be a positive integer"),
        (["--cpus-per-cell", "4", "--cpus", "2"], "--cpus-per-cell 4 is more than the 2 CPUs"),
    ],
)
def test_sweep_refuses_impossible_cells_before_ray_starts(tmp_path, cli_output, extra, message):
    assert main(["sweep", "--methods", "relu", "--out", str(tmp_path / "s"), *extra]) == 2
    assert squash(message) in cli_output()
    assert not (tmp_path / "s").exists()


def test_sweep_table_marks_means_over_fewer_runs_than_planned(tmp_path):
    from nerf_norm.sweep import Cell, SweepCommand, write_table

    cells = [Cell(m, "2x8", i, 0) for m in ("relu", "relu+cn") for i in ("a.png", "b.png")]
    records = [
        {"method": c.method, "arch": c.arch, "input": c.input, "seed": 0, "metrics": {"psnr": 20.0 + n}}
        for n, c in enumerate(cells)
        if c != cells[1]  # relu on b.png failed
    ]
    text = write_table(tmp_path / "table.md", SweepCommand(), records, cells).read_text()
    assert "| 2x8 | 20.000* (1/2) | **22.500** |" in text
    assert "| b.png 2x8 | - | **23.000** |" in text and "the other cells failed" in text


# --- one output-path rule ---------------------------------------------------------------------------------------


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder nothing can be written into: a read-only bind mount as root (root ignores permission bits), the
    permission bits otherwise."""
    src, ro = tmp_path / "src", tmp_path / "ro"
    src.mkdir()
    ro.mkdir()
    if os.geteuid() == 0:
        done = subprocess.run(["mount", "--bind", "-o", "ro", str(src), str(ro)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot make a read-only mount here: {done.stderr.decode().strip()}")
        yield ro
        subprocess.run(["umount", str(ro)], check=False)
    else:
        ro.chmod(0o555)
        yield ro
        ro.chmod(0o755)


def _commands(tmp_path: Path, out: Path) -> dict:
    image = _image(tmp_path / "a.png")
    mesh = tmp_path / "m.ply"
    config = tmp_path / "config.yml"
    config.write_text("x: 1\n")
    return {
        "image": _fit("image", out, "--image", str(image)),
        "ct": _fit("ct", out),
        "occupancy": ["occupancy", "--out", str(out), "--resolution", "8", "--iters", "1"],
        "mri": ["mri", "--out", str(out), "--iters", "1"],
        "ntk": ["ntk", "--out", str(out), "--samples", "16", "--arch", "2x8"],
        "spectral-dynamics": ["spectral-dynamics", "--out", str(out), "--iters", "1", "--arch", "2x8"],
        "make-scene": ["make-scene", "blender", "--out", str(out), "--scene.resolution", "8"],
        "sweep": ["sweep", "--methods", "relu", "--out", str(out)],
        "demo": ["demo", "--out", str(out), "--seconds", "1"],
        "extract-mesh": ["extract-mesh", "--load-config", str(config), "--out", str(out)],
        "eval-dtu": ["eval-dtu", "--mesh", str(mesh), "--scan", "1", "--dataset-dir", str(tmp_path), "--out", str(out)],
    }


@pytest.mark.parametrize(
    "command",
    ["image", "ct", "occupancy", "mri", "ntk", "spectral-dynamics", "make-scene", "sweep", "demo", "extract-mesh",
     "eval-dtu"],
)  # fmt: skip
def test_unwritable_output_is_one_line_before_any_work(tmp_path, read_only_dir, cli_output, command):
    out = (
        read_only_dir
        / "sub"
        / ("out.ply" if command == "extract-mesh" else "out.json" if command == "eval-dtu" else "o")
    )
    assert main(_commands(tmp_path, out)[command]) == 2
    text = cli_output()
    assert squash(f"cannot write in {read_only_dir}") in text, text
    assert squash("Read-only file system") in text or squash("Permission denied") in text, text
    assert "Traceback" not in text


@pytest.mark.parametrize("command", ["extract-mesh", "eval-dtu"])
def test_a_directory_where_a_file_is_expected_is_refused(tmp_path, cli_output, command):
    out = tmp_path / "taken"
    out.mkdir()
    assert main([*_commands(tmp_path, out)[command], "--overwrite"]) == 2
    assert squash(f"--out {out} is a directory; it must name a file") in cli_output() and out.is_dir()


@pytest.mark.parametrize("command", ["ntk", "sweep", "demo", "make-scene"])
def test_a_file_where_a_folder_is_expected_is_refused(tmp_path, cli_output, command):
    out = tmp_path / "notes.txt"
    out.write_text("mine")
    assert main(_commands(tmp_path, out)[command]) == 2
    assert squash(f"--out {out} is a file") in cli_output() and out.read_text() == "mine"


def test_atomic_write_leaves_nothing_half_written(tmp_path):
    from nerf_norm.outputs import atomic_write

    target = tmp_path / "mesh.ply"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["mesh.ply"]


# --- impossible sizes, SIGTERM ------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["1000x100000", "3x200000", "10x4096"])
def test_impossible_sizes_are_refused_before_allocation(tmp_path, cli_output, arch):
    image = _image(tmp_path / "kodak_sized.png", size=(512, 768))
    assert main(["image", "--image", str(image), "--arch", arch, "--out", str(tmp_path / "o"), "--quiet"]) == 2
    text = cli_output()
    assert squash("GiB of memory, more than the") in text and squash("a smaller --arch") in text, text
    assert not (tmp_path / "o" / "checkpoint.pt").exists()


def test_sigterm_writes_a_checkpoint_and_the_run_resumes(tmp_path, monkeypatch):
    image = _image(tmp_path / "a.png")
    argv = [*_fit("image", tmp_path / "o", "--image", str(image)), "--iters", "8", "--checkpoint-every", "100"]
    calls = {"n": 0}
    original = torch.optim.Adam.step

    def step_then_terminate(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler or `timeout` stops a job
        return original(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", step_then_terminate)
    assert main(argv) == 143
    assert torch.load(tmp_path / "o" / "checkpoint.pt", weights_only=False)["step"] == 3  # the last finished
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler lives only while training
    monkeypatch.setattr(torch.optim.Adam, "step", original)
    assert main(argv) == 0


# --- kernels built once, loudly -----------------------------------------------------------------------------------


def test_the_same_ninja_and_build_folder_with_or_without_an_activated_venv(monkeypatch):
    from nerf_norm import kernels

    seen = set()
    for path in (f"/usr/bin:{Path(sys.executable).parent}:/bin", f"{Path(sys.executable).parent}:/usr/bin:/bin"):
        monkeypatch.setenv("PATH", path)
        kernels._toolchain_tag.cache_clear()
        seen.add((kernels._ninja(), kernels.build_directory()))
    kernels._toolchain_tag.cache_clear()
    assert len(seen) == 1
    ((ninja, folder),) = seen
    assert ninja == str(Path(sys.executable).parent / "ninja") or not (Path(sys.executable).parent / "ninja").exists()
    assert folder.parent.name == "nerf_norm"  # this install's own folder, beside no other tool's


def test_alternating_launchers_compile_nothing():
    """Loads the kernels from four processes, PATH as in an activated venv and as with .venv/bin/nerf-norm
    alternately: no object file and no library is written again."""
    from nerf_norm import kernels

    if kernels.mode() == "torch" or not kernels.is_built():
        pytest.skip("the CPU kernels are not built here")
    folder = kernels.build_directory()
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.suffix in (".o", ".so")}
    venv = str(Path(sys.executable).parent)
    code = "from nerf_norm import kernels; kernels.select('cpp'); assert kernels.load() is not None"
    for path in (f"{venv}:/usr/bin:/bin", f"/usr/bin:/bin:{venv}") * 2:
        env = {**os.environ, "PATH": path}
        subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    after = {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.suffix in (".o", ".so")}
    assert before and after == before


def test_a_process_waiting_for_anothers_build_says_so(tmp_path, caplog):
    from nerf_norm import kernels

    lock = tmp_path / "lock"
    lock.touch()
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from filelock import FileLock; import time; l = FileLock({str(lock)!r}); "
         "l.acquire(); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == b"held"
        assert kernels._building_elsewhere(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert not kernels._building_elsewhere(tmp_path)  # the lock dies with its holder


# --- broken runs and nerfstudio options ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def neus_run(tmp_path_factory):
    from test_neus_data import make_scene

    from nerf_norm.nerfstudio.experiment import RunSettings, configure, method_config, train

    root = tmp_path_factory.mktemp("broken_runs")
    make_scene(root / "scene", views=4, masks=4)
    config = configure(method_config("neus-cn-lite"), RunSettings(root / "scene", root / "run", steps=2))
    config.pipeline.datamanager.dataparser.eval_every = 2
    config.pipeline.datamanager.train_num_rays_per_batch = 32
    trainer, _ = train(config)
    return trainer, config


def _broken_copy(run_config, tmp_path: Path, how: str) -> Path:
    """A copy of the run, broken as ``how`` says; returns its config.yml."""
    import yaml

    config = yaml.load((run_config.get_base_dir() / "config.yml").read_text(), Loader=yaml.Loader)
    config.output_dir = tmp_path / "outputs"
    models = config.get_checkpoint_dir()
    shutil.copytree(run_config.get_checkpoint_dir(), models)
    (ckpt,) = models.glob("step-*.ckpt")
    if how == "no checkpoint":
        ckpt.unlink()
    elif how == "truncated":
        ckpt.write_bytes(ckpt.read_bytes()[:1000])
    elif how == "points elsewhere":
        config.output_dir = tmp_path / "moved"
    path = tmp_path / "config.yml"
    path.write_text(yaml.dump(config))
    return path


@pytest.mark.parametrize(
    "how, message",
    [
        ("no checkpoint", "the run has no checkpoint"),
        ("truncated", "it is truncated or not a nerfstudio checkpoint"),
        ("points elsewhere", "does not exist; run from the folder ns-train ran in"),
    ],
)
def test_extract_mesh_on_a_broken_run_is_one_line(neus_run, tmp_path, cli_output, how, message):
    _, config = neus_run
    path = _broken_copy(config, tmp_path, how)
    assert main(["extract-mesh", "--load-config", str(path), "--out", str(tmp_path / "m.ply")]) == 2
    text = cli_output()
    assert squash(message) in text and "Traceback" not in text, text
    assert not list(tmp_path.glob("*.ply"))


@pytest.mark.parametrize("how, message", [("no checkpoint", "the run has no checkpoint"), ("truncated", "truncated")])
def test_nerfstudios_checkpoint_loader_failures_are_explained(neus_run, tmp_path, how, message):
    """What ``ns-eval`` / ``ns-viewer --load-config`` hit in nerfstudio's eval_load_checkpoint, in one line."""
    import yaml
    from nerfstudio.utils.eval_utils import eval_load_checkpoint

    from nerf_norm.nerfstudio.run_errors import explain

    trainer, run_config = neus_run
    config = yaml.load(_broken_copy(run_config, tmp_path, how).read_text(), Loader=yaml.Loader)
    config.load_dir = config.get_checkpoint_dir()
    with pytest.raises(Exception) as info:
        eval_load_checkpoint(config, trainer.pipeline)
    explained = explain(info.value, info.tb)
    assert explained is not None and message in explained and str(config.load_dir) in explained
    assert explain(ValueError("unrelated"), None) is None


def test_ns_eval_on_a_run_without_checkpoint_prints_one_error_line(neus_run, tmp_path):
    _, config = neus_run
    path = _broken_copy(config, tmp_path, "no checkpoint")
    ns_eval = Path(sys.executable).parent / "ns-eval"
    done = subprocess.run(
        [str(ns_eval), "--load-config", str(path), "--output-path", str(tmp_path / "e.json")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "error: the run has no checkpoint" in done.stderr


def test_neus_renders_large_batches_outside_training_in_chunks(neus_run, monkeypatch):
    """ns-export's call (a whole training batch under no_grad) is rendered in chunks of eval_num_rays_per_chunk
    rays, with the same per-ray outputs as one call."""
    from nerfstudio.models.base_model import Model

    trainer, _ = neus_run
    model = trainer.pipeline.model
    model.eval()
    bundle = trainer.pipeline.datamanager.eval_dataset.cameras[0:1].generate_rays(0).flatten()[:300]
    with torch.no_grad():
        whole = Model.forward(model, bundle)
        sizes = []
        original = Model.forward

        def record(self, ray_bundle):
            sizes.append(len(ray_bundle))
            return original(self, ray_bundle)

        monkeypatch.setattr(Model, "forward", record)
        model.config.eval_num_rays_per_chunk = 128
        chunked = model(bundle)
    assert sizes == [128, 128, 44]
    for key in ("rgb", "depth", "accumulation", "normal"):
        torch.testing.assert_close(chunked[key], whole[key], atol=2e-5, rtol=0)


def test_checkpoint_mismatch_is_a_user_error():
    from nerf_norm.nerfstudio.checkpoints import CheckpointMismatch

    assert issubclass(CheckpointMismatch, UserError) and issubclass(CheckpointMismatch, RuntimeError)


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("optimizers", "nan", "--optimizers.fields.optimizer.lr must be a positive finite number, got nan"),
        ("pipeline.model.num_coarse_samples", 0, "--pipeline.model.num-coarse-samples must be at least 1, got 0"),
        ("pipeline.datamanager.train_num_rays_per_batch", -1, "train-num-rays-per-batch must be at least 1"),
        ("pipeline.model.norm_momentum", 2.0, "--pipeline.model.norm-momentum must be in (0, 1], got 2.0"),
    ],
)
def test_method_configs_check_values_when_built(option, value, message):
    import copy
    import dataclasses

    from nerf_norm.method_configs.mipnerf import mipnerf_norm

    config = mipnerf_norm("cn")
    if option == "optimizers":
        optimizers = copy.deepcopy(config.optimizers)
        optimizers["fields"]["optimizer"].lr = float(value)
        changes = {"optimizers": optimizers}
    else:
        *path, name = option.split(".")
        target = config
        for part in path:
            target = getattr(target, part)
        setattr(target, name, value)
        changes = {}
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        dataclasses.replace(config, **changes)  # what tyro does with the command line: build it anew


def test_ns_train_with_a_nan_learning_rate_is_one_line_and_writes_nothing(tmp_path):
    ns_train = Path(sys.executable).parent / "ns-train"
    done = subprocess.run(
        [str(ns_train), "mipnerf-cn-lite", "--data", str(tmp_path), "--output-dir", str(tmp_path / "out"),
         "--optimizers.fields.optimizer.lr", "nan"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "error: --optimizers.fields.optimizer.lr must be a positive finite number, got nan" in done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("layout", ["blender", "neus"])
def test_a_truncated_frame_is_named_with_its_file(tmp_path, layout):
    from PIL import Image

    if layout == "blender":
        from nerf_norm.nerfstudio.blender_dataparser import check_blender_split
        from nerf_norm.scenes.blender import BlenderSceneConfig, write_blender_scene

        write_blender_scene(tmp_path, BlenderSceneConfig(resolution=16))
        frame = tmp_path / "train" / "r_1.png"
        check = lambda: check_blender_split(tmp_path, "train")  # noqa: E731
    else:
        from test_neus_data import make_scene

        from nerf_norm.nerfstudio.neus_dataparser import NeuSDataParserConfig

        make_scene(tmp_path, views=3, masks=3)
        frame = tmp_path / "image" / "000001.png"
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(frame)
        check = lambda: NeuSDataParserConfig(data=tmp_path).setup().get_dataparser_outputs("train")  # noqa: E731
    frame.write_bytes(frame.read_bytes()[:-40])  # cut before the end: "image file is truncated"
    with pytest.raises(UserError, match=f"{frame}: not a readable image|{frame} is not a readable image"):
        check()


def test_both_demo_runs_open_with_eval_setup_and_help_names_only_registered_methods(tmp_path):
    """The demo saves each run under its -lite method name; ns-eval and ns-viewer --load-config find the method by
    that name and load the run with nerfstudio's eval_setup (offline: no LPIPS weights to download)."""
    import inspect
    import re

    from nerfstudio.configs.method_configs import all_methods
    from nerfstudio.utils.eval_utils import eval_setup

    from nerf_norm.demo import COMPARED, DemoCommand
    from nerf_norm.nerfstudio.experiment import RunSettings, configure, lite_config, train
    from nerf_norm.nerfstudio.mipnerf import MipNerfNormModel
    from nerf_norm.scenes.blender import BlenderSceneConfig, write_blender_scene

    scene = write_blender_scene(tmp_path / "scene", BlenderSceneConfig(resolution=16, train_views=4))
    for name in COMPARED:
        config = configure(lite_config(name), RunSettings(scene, tmp_path / name, steps=1))
        assert config.method_name in all_methods
        train(config)
        _, pipeline, _, step = eval_setup(config.get_base_dir() / "config.yml", test_mode="inference")
        assert isinstance(pipeline.model, MipNerfNormModel)
        normalized = any("Norm" in type(m).__name__ for m in pipeline.model.field.modules())
        assert normalized == (name != "mipnerf")  # the baseline keeps nerfstudio's MLPs as they are
    named = set(re.findall(r"\b(mipnerf[\w-]*-lite)\b", inspect.getsource(DemoCommand)))
    assert named and named <= set(all_methods), named


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a CUDA machine nerfstudio's marching cubes runs")
def test_ns_export_marching_cubes_on_the_cpu_points_to_extract_mesh(neus_run, tmp_path):
    from nerfstudio.scripts.exporter import ExportMarchingCubesMesh

    from nerf_norm.nerfstudio.run_errors import explain

    _, config = neus_run
    path = config.get_base_dir() / "config.yml"
    for resolution in (64, 512):  # nerfstudio's own assertion first, then its .cuda()
        with pytest.raises(Exception) as info:
            ExportMarchingCubesMesh(load_config=path, output_dir=tmp_path / "mc", resolution=resolution).main()
        message = explain(info.value, info.tb)
        assert message is not None and "\n" not in message, message
        assert message.startswith("ns-export marching-cubes needs a CUDA device")
        assert f"nerf-norm extract-mesh --load-config {path}" in message
