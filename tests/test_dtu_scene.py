"""make-scene dtu, and the whole loop on it: generate -> train neus-cn-lite -> extract-mesh -> DTU chamfer."""

from __future__ import annotations

import json

import imageio.v2 as imageio
import numpy as np
import pytest
import trimesh
from scipy.io import savemat

from nerf_norm.cli import main
from nerf_norm.dtu_eval import downsample_greedy, sample_mesh, symmetric_chamfer
from nerf_norm.errors import UserError
from nerf_norm.nerfstudio.experiment import RunSettings, configure, method_config, train
from nerf_norm.nerfstudio.neus_dataparser import NeuSDataParserConfig
from nerf_norm.scenes.dtu import DTUSceneConfig, write_dtu_scene

SMALL = DTUSceneConfig(width=64, height=48, views=16)


@pytest.fixture(scope="module")
def bunny_scene(tmp_path_factory):
    return write_dtu_scene(tmp_path_factory.mktemp("bunny"), None, SMALL)


def test_scene_layout_and_geometry(bunny_scene):
    assert len(list((bunny_scene / "image").glob("*.png"))) == 16
    assert len(list((bunny_scene / "mask").glob("*.png"))) == 16
    gt = trimesh.load(bunny_scene / "mesh_world.ply", process=False)
    data = np.load(bunny_scene / "cameras_sphere.npz")
    scale = data["scale_mat_0"]
    # the object's bounding sphere: radius 80 mm around the world centre, 0.7 in the normalized frame
    radius = np.linalg.norm(gt.vertices - np.asarray(SMALL.world_centre), axis=1)
    assert radius.max() == pytest.approx(SMALL.world_radius, rel=1e-6)
    assert scale[0, 0] == pytest.approx(SMALL.world_radius / SMALL.object_radius)
    # every vertex projects into the mask of every view (the mask is the silhouette; 1 pixel of slack)
    from scipy.ndimage import binary_dilation

    hom = np.c_[gt.vertices, np.ones(len(gt.vertices))]
    for i in (0, 7, 15):
        mask = binary_dilation(imageio.imread(bunny_scene / "mask" / f"{i:03}.png") > 127, iterations=1)
        proj = hom @ data[f"world_mat_{i}"][:3].T
        uv = np.floor(proj[:, :2] / proj[:, 2:3]).astype(int)
        assert np.all((uv[:, 0] >= 0) & (uv[:, 0] < 64) & (uv[:, 1] >= 0) & (uv[:, 1] < 48))
        assert mask[uv[:, 1], uv[:, 0]].mean() > 0.995
    # the neus-data parser reads it: cameras at the configured distance, looking at the object
    out = NeuSDataParserConfig(data=bunny_scene, eval_every=0, use_masks=True).setup().get_dataparser_outputs("train")
    centres = out.cameras.camera_to_worlds[:, :3, 3].numpy()
    np.testing.assert_allclose(np.linalg.norm(centres, axis=1), SMALL.camera_distance, rtol=1e-4)


def test_scene_refuses_to_overwrite_and_rejects_bad_meshes(bunny_scene, tmp_path):
    with pytest.raises(UserError, match="--overwrite"):
        write_dtu_scene(bunny_scene, None, SMALL)
    empty = tmp_path / "empty.obj"
    empty.write_text("# nothing\n")
    with pytest.raises(UserError, match="empty|cannot read"):
        write_dtu_scene(tmp_path / "x", empty, SMALL)
    with pytest.raises(UserError, match="mesh file not found"):
        write_dtu_scene(tmp_path / "y", tmp_path / "missing.ply", SMALL)
    tetra = "v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 3 2\nf 1 2 4\nf 1 4 3\nf 2 3 4\n"
    (tmp_path / "nan.obj").write_text(tetra.replace("v 0 0 1", "v 0 nan 1"))
    with pytest.raises(UserError, match="1 vertices with NaN or infinite coordinates"):
        write_dtu_scene(tmp_path / "n", tmp_path / "nan.obj", SMALL)
    (tmp_path / "flat.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nv 1 1 0\nf 1 2 3\nf 2 4 3\n")
    with pytest.raises(UserError, match="degenerate: its 4 vertices lie on a plane"):
        write_dtu_scene(tmp_path / "f", tmp_path / "flat.obj", SMALL)
    assert main(["make-scene", "dtu", "--out", str(bunny_scene)]) == 2
    for args in (["--scene.world-centre", "nan", "0", "0"], ["--scene.width", "100000", "--scene.height", "100000"]):
        assert main(["make-scene", "dtu", "--out", str(tmp_path / "z"), *args]) == 2
        assert not (tmp_path / "z" / "cameras_sphere.npz").exists()


def test_overwrite_with_fewer_views_leaves_no_stale_images(tmp_path):
    from dataclasses import replace

    out = write_dtu_scene(tmp_path / "s", None, replace(SMALL, views=4))
    write_dtu_scene(out, None, replace(SMALL, views=2), overwrite=True)
    assert len(list((out / "image").iterdir())) == 2 and len(list((out / "mask").iterdir())) == 2


def _dtu_ground_truth(root, scene):
    """The scene's mesh as DTU ground truth in the official layout: STL points, a full observation mask
    around it and a plane below everything."""
    gt = trimesh.load(scene / "mesh_world.ply", process=False)
    pts = downsample_greedy(sample_mesh(gt.vertices, gt.faces, 0.5), 0.5)
    (root / "Points" / "stl").mkdir(parents=True)
    (root / "ObsMask").mkdir()
    trimesh.PointCloud(pts).export(str(root / "Points" / "stl" / "stl001_total.ply"))
    lo, hi = gt.bounds[0] - 20, gt.bounds[1] + 20
    shape = tuple(np.ceil((hi - lo) / 4.0).astype(int) + 1)
    savemat(
        str(root / "ObsMask" / "ObsMask1_10.mat"),
        {"ObsMask": np.ones(shape, np.uint8), "BB": np.stack([lo, hi]), "Res": np.array([[4.0]])},
    )
    savemat(str(root / "ObsMask" / "Plane1.mat"), {"P": np.array([[0.0], [0.0], [0.0], [1.0]])})
    return root


@pytest.mark.slow
def test_train_extract_and_score_end_to_end(bunny_scene, tmp_path):
    """generate -> train neus-cn-lite -> extract-mesh -> eval-dtu, at 1 and 120 steps. The DTU protocol scores
    the trained mesh below the initial sphere, and the symmetric chamfer to the ground truth without the protocol's
    20 mm cut (which flatters the sphere: 60% of its points fall beyond it) drops by at least 40%.

    Measured 2026-12-04 (AMD EPYC, 2 cores, seed 0, both cores busy with other work): DTU overall 10.31 mm after 1
    step, 8.63 mm after 120; symmetric chamfer 29.8 mm -> 10.3 mm (a 65% drop; asserted 40%)."""
    dtu = _dtu_ground_truth(tmp_path / "dtu", bunny_scene)
    gt = trimesh.load(bunny_scene / "mesh_world.ply", process=False)
    gt_points = downsample_greedy(sample_mesh(gt.vertices, gt.faces, 1.0), 1.0)
    scores, chamfer = {}, {}
    for steps in (1, 120):
        config = configure(
            method_config("neus-cn-lite"), RunSettings(bunny_scene, tmp_path / f"run{steps}", steps=steps)
        )
        config.pipeline.datamanager.dataparser.eval_every = 8
        train(config)
        mesh = tmp_path / f"mesh{steps}.ply"
        assert (
            main(
                [
                    "extract-mesh",
                    "--load-config",
                    str(config.get_base_dir() / "config.yml"),
                    "--out",
                    str(mesh),
                    "--resolution",
                    "64",
                    "--block",
                    "16",
                ]
            )
            == 0
        )
        out = tmp_path / f"score{steps}.json"
        assert (
            main(
                [
                    "eval-dtu",
                    "--mesh",
                    str(mesh),
                    "--scan",
                    "1",
                    "--dataset-dir",
                    str(dtu),
                    "--out",
                    str(out),
                    "--density",
                    "0.5",
                ]
            )
            == 0
        )
        scores[steps] = json.loads(out.read_text())["overall"]
        extracted = trimesh.load(mesh, process=False)
        chamfer[steps] = symmetric_chamfer(np.asarray(extracted.vertices), np.asarray(extracted.faces), gt_points)
    print(f"after 1 and 120 steps: DTU overall {scores} mm, symmetric chamfer {chamfer} mm")
    assert scores[120] < scores[1], scores
    assert chamfer[120] < 0.6 * chamfer[1], chamfer
