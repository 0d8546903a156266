"""nerfstudio's exporters on our methods: ``ns-export pointcloud`` at its default normal method on neus-cn-lite
(our NeuS renders ``normals`` in [0, 1]) and with open3d normals on mipnerf-cn-lite, the accumulated opacity as
the alpha the exporter masks by, and ``ns-render dataset`` writing every output of a test view."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ns_commands import assert_dataset_render_matches_eval, ns_in_process, run_ns
from test_neus_data import make_scene

from nerf_norm.nerfstudio.experiment import RunSettings, configure, method_config, train
from nerf_norm.scenes.blender import BlenderSceneConfig, write_blender_scene


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A 2-step mipnerf-cn-lite run on a 16x16 Blender scene and a 2-step neus-cn-lite run on a NeuS-layout scene."""
    root = tmp_path_factory.mktemp("ns_export")
    scene = write_blender_scene(root / "blender", BlenderSceneConfig(resolution=16, train_views=4, test_views=2))
    mip = configure(method_config("mipnerf-cn-lite"), RunSettings(scene, root / "mip", steps=2))
    mip.pipeline.datamanager.train_num_rays_per_batch = 64
    mip_trainer, _ = train(mip)
    make_scene(root / "neus_scene", views=4, masks=4)
    neus = configure(method_config("neus-cn-lite"), RunSettings(root / "neus_scene", root / "neus", steps=2))
    neus.pipeline.datamanager.dataparser.eval_every = 2
    neus.pipeline.datamanager.train_num_rays_per_batch = 32
    neus_trainer, _ = train(neus)
    return {"mipnerf": (mip_trainer, mip), "neus": (neus_trainer, neus)}


def test_pointcloud_at_the_default_normal_method_on_neus(runs):
    from nerfstudio.exporter.exporter_utils import generate_point_cloud

    trainer, _ = runs["neus"]
    pipeline = trainer.pipeline
    pipeline.eval()
    pipeline.datamanager.train_pixel_sampler.num_rays_per_batch = 256
    cloud = generate_point_cloud(pipeline, num_points=64, remove_outliers=False, normal_output_name="normals")
    points, normals = np.asarray(cloud.points), np.asarray(cloud.normals)
    assert len(points) >= 64 and normals.shape == points.shape and np.isfinite(normals).all()
    # the rendered normals (ray-weighted sums of the SDF's unit gradients), mapped back to [-1, 1] by the exporter
    assert (np.abs(normals) <= 1 + 1e-5).all() and np.linalg.norm(normals, axis=1).max() > 0.1


def test_rgba_alpha_is_the_accumulated_opacity(runs):
    for name in ("mipnerf", "neus"):
        trainer, _ = runs[name]
        model = trainer.pipeline.model
        model.eval()
        bundle = trainer.pipeline.datamanager.eval_dataset.cameras[0:1].generate_rays(0).flatten()[:64]
        with torch.no_grad():
            outputs = model(bundle)
        rgba = model.get_rgba_image(outputs)
        assert rgba.shape == (64, 4)
        torch.testing.assert_close(rgba[:, 3], outputs["accumulation"].squeeze(-1).clamp(0, 1))
        torch.testing.assert_close(rgba[:, :3], outputs["rgb"])


def test_ns_export_pointcloud_and_ns_render_dataset_on_mipnerf_cn(runs, tmp_path):
    _, config = runs["mipnerf"]
    bindir = Path(sys.executable).parent
    config_path = str(config.get_base_dir() / "config.yml")
    export = [str(bindir / "ns-export"), "pointcloud", "--load-config", config_path, "--output-dir", str(tmp_path)]
    export += ["--normal-method", "open3d", "--num-points", "64", "--num-rays-per-batch", "256"]
    export += ["--remove-outliers", "False"]
    done = subprocess.run(export, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    import open3d as o3d

    cloud = o3d.io.read_point_cloud(str(tmp_path / "point_cloud.ply"))
    assert len(cloud.points) > 0 and cloud.has_normals() and cloud.has_colors()

    assert_dataset_render_matches_eval(Path(config_path), tmp_path)


@pytest.fixture(scope="module")
def nerfacto_run(tmp_path_factory):
    """A nerfacto-cn-lite run long enough to hold a surface: 150 steps of 256 rays on a 32x32 scene of 8 views;
    ``(its config.yml, the scene)``."""
    root = tmp_path_factory.mktemp("nerfacto_export")
    scene = write_blender_scene(root / "scene", BlenderSceneConfig(resolution=32, train_views=8, test_views=1))
    config = configure(method_config("nerfacto-cn-lite"), RunSettings(scene, root / "run", steps=150))
    config.pipeline.datamanager.train_num_rays_per_batch = 256
    train(config)
    return config.get_base_dir() / "config.yml", scene


def test_ns_export_tsdf_and_pointcloud_on_nerfacto_cn(nerfacto_run, tmp_path):
    """``ns-export tsdf`` (the training views' depth and colour fused into a volume; nerfstudio's TSDF runs on the
    CPU) writes a mesh with faces and a colour per vertex; ``ns-export pointcloud`` (its parser, in this process) a
    cloud with colours."""
    import open3d as o3d
    import trimesh

    config_file = nerfacto_run[0]
    box = ["--bounding-box-min", "-1.5", "-1.5", "-1.5", "--bounding-box-max", "1.5", "1.5", "1.5"]
    tsdf = ["tsdf", "--load-config", config_file, "--output-dir", tmp_path, "--resolution", "32", "--batch-size", "2"]
    run_ns("export", *tsdf, "--texture-method", "tsdf", *box)
    mesh = trimesh.load(tmp_path / "tsdf_mesh.ply", process=False)
    assert len(mesh.faces) > 0 and mesh.visual.vertex_colors.shape[0] == len(mesh.vertices)
    cloud = ["pointcloud", "--load-config", config_file, "--output-dir", tmp_path, "--normal-method", "open3d"]
    ns_in_process("export", *cloud, "--num-points", "64", "--num-rays-per-batch", "256", "--remove-outliers", "False")
    points = o3d.io.read_point_cloud(str(tmp_path / "point_cloud.ply"))
    assert len(points.points) > 0 and points.has_colors() and points.has_normals()


def test_ns_export_tsdf_without_a_surface_says_so_in_one_line(runs, tmp_path):
    """A 2-step run's depth never crosses the volume's zero level: one line (exit 1, as our hook ends nerfstudio's
    commands), not scikit-image's traceback."""
    _, config = runs["mipnerf"]
    export = [str(Path(sys.executable).parent / "ns-export"), "tsdf", "--load-config"]
    export += [str(config.get_base_dir() / "config.yml"), "--output-dir", str(tmp_path), "--resolution", "16"]
    done = subprocess.run([*export, "--texture-method", "tsdf"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "ns-export tsdf found no surface" in done.stderr


def test_ns_render_dataset_matches_ns_eval_on_neus_cn(runs, tmp_path):
    _, config = runs["neus"]
    assert_dataset_render_matches_eval(config.get_base_dir() / "config.yml", tmp_path)


def _frames(video: Path) -> tuple:
    """(width, height, frames) of a video, counted by ffprobe."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
         "stream=width,height,nb_read_frames", "-of", "csv=p=0", str(video)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return tuple(int(v) for v in out.strip().split(","))


def _camera_path(poses: list, size: int) -> dict:
    """A camera path as the viewer writes it (``camera_path.json``): two keyframes at ``poses`` (4x4)."""
    return {
        "camera_type": "perspective",
        "render_height": size,
        "render_width": size,
        "fps": 2,
        "seconds": 1,
        "camera_path": [{"camera_to_world": sum(pose, []), "fov": 50.0, "aspect": 1.0} for pose in poses],
    }


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ns-render needs ffmpeg (scripts/install.sh installs it)")
@pytest.mark.parametrize("family", ["mipnerf", "neus", "nerfacto"])
def test_ns_render_interpolate_spiral_and_camera_path_write_videos(family, runs, nerfacto_run, tmp_path):
    """``ns-render interpolate``, ``spiral`` and ``camera-path`` (a path in the viewer's JSON format) on a finished
    run of each family (the first as the console script, the others through its parser in this process): videos of
    the cameras' size and the frame count asked for (spiral on mipnerf needs float32
    intrinsics from our Blender parser: nerfstudio's own are float64 and its spiral fails on them)."""
    if family == "nerfacto":  # the Blender-format scene as nerfstudio's parser reads it: poses as written
        (config_file, scene), size = nerfacto_run, (32, 32)
        frames = json.loads((scene / "transforms_train.json").read_text())["frames"]
        poses = [frame["transform_matrix"] for frame in frames[:2]]
    else:
        trainer, config = runs[family]
        config_file = config.get_base_dir() / "config.yml"
        cameras = trainer.pipeline.datamanager.train_dataset.cameras
        size = (int(cameras.width[0]), int(cameras.height[0]))
        poses = [pose.tolist() + [[0.0, 0.0, 0.0, 1.0]] for pose in cameras.camera_to_worlds[:2]]
    common = ["--load-config", str(config_file)]
    interpolate = tmp_path / "interpolate.mp4"
    run_ns("render", "interpolate", *common, "--output-path", interpolate, "--pose-source", "train",
           "--interpolation-steps", "2", "--frame-rate", "4")  # fmt: skip
    assert _frames(interpolate)[:2] == size and _frames(interpolate)[2] >= 2
    spiral = tmp_path / "spiral.mp4"
    ns_in_process("render", "spiral", *common, "--output-path", spiral, "--seconds", "1", "--frame-rate", "4")
    assert _frames(spiral) == (*size, 4)
    # two keyframes: the first two training cameras, in the frame the viewer shows them in
    path_file = tmp_path / "camera_path.json"
    path_file.write_text(json.dumps(_camera_path(poses, 12)))
    video = tmp_path / "path.mp4"
    ns_in_process("render", "camera-path", *common, "--camera-path-filename", path_file, "--output-path", video)
    assert _frames(video) == (12, 12, 2)


def test_extract_mesh_writes_vertex_colours_from_the_colour_network(runs, tmp_path):
    """``nerf-norm extract-mesh --vertex-colors``: each vertex coloured by the colour network seen along its normal
    (checked against the same evaluation on the trained field for a few vertices)."""
    import trimesh

    from nerf_norm.cli import main
    from nerf_norm.nerfstudio.extract_mesh import vertex_colors

    trainer, config = runs["neus"]
    out = tmp_path / "m.ply"
    args = ["extract-mesh", "--load-config", str(config.get_base_dir() / "config.yml"), "--out", str(out)]
    assert main([*args, "--resolution", "32", "--block", "16", "--no-world", "--vertex-colors"]) == 0
    mesh = trimesh.load(str(out), process=False)
    colours = np.asarray(mesh.visual.vertex_colors)
    assert colours.shape == (len(mesh.vertices), 4) and (colours[:, 3] == 255).all()
    field = trainer.pipeline.model.field
    trainer.pipeline.model.eval()
    expected = vertex_colors(field, np.asarray(mesh.vertices[:5]), chunk=5, device="cpu")
    assert np.abs(expected.astype(int) - colours[:5].astype(int)).max() <= 1


def test_spectral_metrics_reach_the_tensorboard_event_file(tmp_path):
    """``--pipeline.model.spectral-metrics True``: every eval image's band errors are logged with nerfstudio's eval
    metrics (here read back from the run's tensorboard event file)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scene = write_blender_scene(tmp_path / "scene", BlenderSceneConfig(resolution=16, train_views=4, test_views=2))
    config = configure(method_config("mipnerf-cn-lite"), RunSettings(scene, tmp_path / "run", steps=3))
    config.pipeline.datamanager.train_num_rays_per_batch = 64
    config.pipeline.model.spectral_metrics = True
    config.pipeline.model.spectral_bands = 4
    config.steps_per_eval_image = 1
    train(config)
    (events,) = list(config.get_base_dir().glob("events.out.tfevents.*"))
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    tags = [t for t in accumulator.Tags()["scalars"] if "spectral_band_" in t]
    assert sorted(t.rsplit("/", 1)[-1] for t in tags) == [f"spectral_band_{b}" for b in range(4)], tags
    values = [e.value for t in tags for e in accumulator.Scalars(t)]
    assert values and all(0.0 <= v < 10.0 for v in values)
