"""The generated Blender-format scene and the checked Blender dataparser: camera convention, bad input."""

import json
import shutil

import numpy as np
import pytest

from nerf_norm.cli import main
from nerf_norm.errors import UserError
from nerf_norm.nerfstudio.blender_dataparser import CheckedBlenderDataParserConfig
from nerf_norm.scenes.blender import BlenderSceneConfig, write_blender_scene
from nerf_norm.scenes.procedural import default_scene, render_rgba


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    out = tmp_path_factory.mktemp("scene")
    return write_blender_scene(out, BlenderSceneConfig(resolution=24, train_views=3, val_views=1, test_views=2))


def _parse(data, split="train"):
    return CheckedBlenderDataParserConfig(data=data).setup().get_dataparser_outputs(split)


def test_layout_and_camera_convention(scene):
    """nerfstudio's rays for our cameras hit exactly where our renderer put the object (OpenGL convention)."""
    import imageio.v2 as imageio

    meta = json.loads((scene / "transforms_train.json").read_text())
    assert len(meta["frames"]) == 3 and meta["camera_angle_x"] == pytest.approx(0.6911112070083618)
    outputs = _parse(scene)
    cameras = outputs.cameras
    assert int(cameras.width[0]) == 24 and len(outputs.image_filenames) == 3
    for index, frame in enumerate(meta["frames"]):
        image = imageio.imread(scene / (frame["file_path"][2:] + ".png"))
        assert image.shape == (24, 24, 4)
        rays = cameras.generate_rays(camera_indices=index)  # [H, W] bundle through pixel centres
        o = rays.origins.reshape(-1, 3).double().numpy()
        d = rays.directions.reshape(-1, 3).double().numpy()
        hits = np.full(len(d), np.inf)
        for prim in default_scene():
            hits = np.minimum(hits, prim.intersect(o, d)[0])
        hit = np.isfinite(hits).reshape(24, 24)
        alpha = image[..., 3] / 255.0
        # pixel centres that hit the scene have coverage > 0; those that miss are not fully covered
        assert (alpha[hit] > 0).all() and (alpha[~hit] < 1).all()
        assert 0.1 < hit.mean() < 0.9


def test_rendering_is_deterministic_and_centred():
    c2w = np.eye(4)
    c2w[2, 3] = 4.0  # on the +z axis looking down -z at the origin
    a = render_rgba(default_scene(), c2w, 16, 16, 20.0)
    assert np.array_equal(a, render_rgba(default_scene(), c2w, 16, 16, 20.0))
    assert a[8, 8, 3] == 1.0 and a[0, 0, 3] == 0.0  # the big sphere at the centre, empty corners


def test_make_scene_cli(tmp_path):
    out = tmp_path / "s"
    assert (
        main(
            [
                "make-scene",
                "blender",
                "--out",
                str(out),
                "--scene.resolution",
                "16",
                "--scene.train-views",
                "2",
                "--scene.val-views",
                "1",
                "--scene.test-views",
                "1",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in out.glob("transforms_*.json")) == [
        "transforms_test.json",
        "transforms_train.json",
        "transforms_val.json",
    ]
    assert main(["make-scene", "blender", "--out", str(out), "--scene.resolution", "4"]) == 2


def _broken_copy(scene, tmp_path, edit):
    data = tmp_path / "broken"
    shutil.copytree(scene, data)
    path = data / "transforms_train.json"
    meta = json.loads(path.read_text())
    edit(data, meta)
    path.write_text(json.dumps(meta))
    return data


def test_missing_transforms_file(scene, tmp_path):
    data = tmp_path / "d"
    shutil.copytree(scene, data)
    (data / "transforms_test.json").unlink()
    _parse(data, "train")
    with pytest.raises(UserError, match=r"transforms_test\.json: missing"):
        _parse(data, "test")


@pytest.mark.parametrize(
    "edit, pattern",
    [
        (
            lambda d, m: (d / "train" / "r_1.png").unlink(),
            r"frames\[1\]\.file_path = './train/r_1': image file .*r_1\.png not found",
        ),
        (
            lambda d, m: m["frames"][2].update(transform_matrix=[[1, 0, 0], [0, 1, 0]]),
            r"frames\[2\]\.transform_matrix: expected a 4x4",
        ),
        (
            lambda d, m: m["frames"][0].update(
                transform_matrix=[[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 4], [0, 0, 0, 1]]
            ),
            r"frames\[0\]\.transform_matrix: .*not a rotation",
        ),
        (lambda d, m: m["frames"][0].pop("file_path"), r"frames\[0\]\.file_path: expected a path string"),
        (lambda d, m: m.pop("camera_angle_x"), r"field 'camera_angle_x' must be"),
        (lambda d, m: m.update(frames=[]), r"field 'frames' must be a non-empty list"),
    ],
    ids=["missing-image", "matrix-shape", "matrix-not-rigid", "no-file-path", "no-fov", "no-frames"],
)
def test_malformed_entries_name_file_and_field(scene, tmp_path, edit, pattern):
    data = _broken_copy(scene, tmp_path, edit)
    with pytest.raises(UserError, match=r"transforms_train\.json.*" + pattern):
        _parse(data)


def test_demo_reports_bad_scene(scene, tmp_path, capsys):
    data = _broken_copy(scene, tmp_path, lambda d, m: (d / "train" / "r_0.png").unlink())
    assert main(["demo", "--data", str(data), "--out", str(tmp_path / "o")]) == 2
    assert "r_0.png not found" in capsys.readouterr().out


def test_make_scene_never_replaces_a_users_files_without_overwrite(tmp_path, capsys):
    small = [
        "--scene.resolution",
        "16",
        "--scene.train-views",
        "3",
        "--scene.val-views",
        "1",
        "--scene.test-views",
        "1",
    ]
    out = tmp_path / "data"
    out.mkdir()
    (out / "transforms_train.json").write_text('{"mine": true}')
    (out / "notes.txt").write_text("keep me")
    assert main(["make-scene", "blender", "--out", str(out), *small]) == 2
    assert "already holds transforms_train.json" in capsys.readouterr().out.replace("\n", "")
    assert json.loads((out / "transforms_train.json").read_text()) == {"mine": True}
    # with --overwrite the scene replaces its own files; a smaller second scene leaves no stale views behind
    five = ["--scene.train-views", "5"]
    assert main(["make-scene", "blender", "--out", str(out), "--overwrite", *small, *five]) == 0
    assert len(list((out / "train").iterdir())) == 5
    assert main(["make-scene", "blender", "--out", str(out), "--overwrite", *small]) == 0
    assert sorted(p.name for p in (out / "train").iterdir()) == ["r_0.png", "r_1.png", "r_2.png"]
    assert (out / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    "args, message",
    [(["--scene.radius", "nan"], "--radius must exceed"), (["--scene.resolution", "200000"], "needs about")],
)
def test_make_scene_bad_sizes_and_numbers(tmp_path, capsys, args, message):
    assert main(["make-scene", "blender", "--out", str(tmp_path / "s"), *args]) == 2
    assert message in capsys.readouterr().out.replace("\n", "")


@pytest.mark.slow
def test_demo_compares_mipnerf_and_mipnerf_cn_at_equal_time(scene, tmp_path, capsys):
    """The main job at a tiny budget: both methods train for the same time, the figure and the scores exist."""
    out = tmp_path / "demo"
    assert (
        main(
            [
                "demo",
                "--data",
                str(scene),
                "--out",
                str(out),
                "--seconds",
                "4",
                "--eval-every",
                "2",
                "--rays",
                "32",
                "--samples",
                "8",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "demo_comparison.png" in printed.replace("\n", "")
    record = json.loads((out / "demo.json").read_text())
    assert set(record["methods"]) == {"mipnerf", "mipnerf-cn"}
    for name, result in record["methods"].items():
        curve = result["curve"]
        assert curve[0]["steps"] == 0 and curve[-1]["seconds"] >= 4.0, name
        assert result["steps"] >= 1 and np.isfinite(result["psnr"]) and len(result["view_psnr"]) == 2
    figure = np.asarray(__import__("imageio.v2", fromlist=["imread"]).imread(out / "demo_comparison.png"))
    assert figure.shape[0] > 200 and figure.shape[1] > 800
    assert list((out / "runs" / "mipnerf-cn").rglob("*.ckpt")), "no checkpoint of the compared run"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seconds", "0"], "--seconds must be positive"),
        (["--rays", "0"], "--rays must be >= 1"),
        (["--steps", "10"], "--steps and --viewer belong to the single-method mode"),
    ],
)
def test_demo_rejects_bad_options(scene, tmp_path, capsys, args, message):
    assert main(["demo", "--data", str(scene), "--out", str(tmp_path / "o"), *args]) == 2
    assert message in capsys.readouterr().out.replace("\n", "")
