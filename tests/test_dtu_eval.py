"""DTU chamfer protocol: known answers on ground truth written in the official layout and formats."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh
from scipy.io import savemat

from nerf_norm.cli import main
from nerf_norm.dtu_eval import downsample_greedy, evaluate_mesh, load_ground_truth, run_evaluation, sample_mesh
from nerf_norm.errors import UserError
from nerf_norm.neus_layout import compose_projection

ROOT = Path(__file__).resolve().parents[1]
SCAN = 7
CENTRE = np.array([10.0, -20.0, 600.0])  # somewhere in DTU-like world millimetres


def sphere(radius: float, subdivisions: int = 4) -> trimesh.Trimesh:
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    mesh.apply_translation(CENTRE)
    return mesh


def write_ground_truth(
    root: Path, gt_mesh: trimesh.Trimesh, *, obs_mask=None, plane=(0.0, 0.0, 0.0, 1.0), res: float = 1.0
) -> Path:
    """Official layout: Points/stl/stl007_total.ply and ObsMask/{ObsMask7_10,Plane7}.mat."""
    pts = downsample_greedy(sample_mesh(gt_mesh.vertices, gt_mesh.faces, 0.2), 0.2, seed=123)
    (root / "Points" / "stl").mkdir(parents=True)
    (root / "ObsMask").mkdir()
    trimesh.PointCloud(pts).export(str(root / "Points" / "stl" / f"stl{SCAN:03}_total.ply"))
    lo, hi = gt_mesh.bounds[0] - 20, gt_mesh.bounds[1] + 20
    shape = tuple(np.ceil((hi - lo) / res).astype(int) + 1)
    mask = np.ones(shape, dtype=np.uint8) if obs_mask is None else obs_mask(shape)
    savemat(
        str(root / "ObsMask" / f"ObsMask{SCAN}_10.mat"),
        {"ObsMask": mask, "BB": np.stack([lo, hi]), "Res": np.array([[res]])},
    )
    savemat(str(root / "ObsMask" / f"Plane{SCAN}.mat"), {"P": np.asarray(plane, dtype=np.float64).reshape(4, 1)})
    return root


def test_sampling_density_and_downsampling():
    tri = trimesh.Trimesh(vertices=[[0, 0, 0], [10, 0, 0], [0, 10, 0]], faces=[[0, 1, 2]], process=False)
    pts = sample_mesh(tri.vertices, tri.faces, 0.2)
    # a right triangle of area 50 mm^2 sampled on a 0.2 mm lattice: about 50 / 0.04 points, all on the triangle
    assert 1200 <= len(pts) - 3 <= 1300
    assert np.all(pts[:, 2] == 0) and np.all(pts[:, 0] + pts[:, 1] <= 10 + 1e-9)
    down = downsample_greedy(pts, 0.5, seed=0)
    from scipy.spatial import cKDTree

    d, _ = cKDTree(down).query(down, k=2)
    assert d[:, 1].min() > 0.5  # no two kept points within the radius
    d_all, _ = cKDTree(down).query(pts)
    assert d_all.max() <= 0.5  # every removed point has a kept point within the radius


def test_mesh_equal_to_ground_truth_scores_about_zero(tmp_path):
    mesh = sphere(30.0)
    gt = load_ground_truth(write_ground_truth(tmp_path, mesh), SCAN)
    result = evaluate_mesh(mesh.vertices, mesh.faces, gt)
    # accuracy: mesh samples lie on the surface the ground truth samples; completeness is bounded by the
    # 0.2 mm downsampling radius of the mesh points
    assert result.accuracy < 0.1 and result.completeness < 0.15 and result.overall < 0.12, result


@pytest.mark.parametrize("d", [0.5, 2.0])
def test_sphere_against_larger_sphere_scores_the_gap(tmp_path, d):
    gt = load_ground_truth(write_ground_truth(tmp_path, sphere(30.0)), SCAN)
    bigger = sphere(30.0 + d)
    result = evaluate_mesh(bigger.vertices, bigger.faces, gt)
    assert result.accuracy == pytest.approx(d, abs=0.06)
    assert result.completeness == pytest.approx(d, abs=0.06)
    assert result.overall == pytest.approx(d, abs=0.06)


def test_observation_mask_plane_and_max_dist(tmp_path):
    mesh = sphere(30.0)

    # unobserved voxels for x above the centre: an outlier blob there must not count for accuracy
    def half_mask(shape):
        m = np.ones(shape, dtype=np.uint8)
        m[shape[0] // 2 + 2 :] = 0
        return m

    root = write_ground_truth(tmp_path, mesh, obs_mask=half_mask, plane=(0.0, 0.0, 1.0, -CENTRE[2]))
    gt = load_ground_truth(root, SCAN)
    blob_far = trimesh.creation.icosphere(2, radius=1.0)
    blob_far.apply_translation(CENTRE + [31.0 + 10.0, 0, 0])  # 10 mm off the surface, unobserved side
    blob_near = trimesh.creation.icosphere(2, radius=1.0)
    blob_near.apply_translation(CENTRE - [31.0 + 10.0, 0, 0])  # 10 mm off, observed side
    base = evaluate_mesh(mesh.vertices, mesh.faces, gt)
    # extra points change the random visiting order of the downsampling, which moves the accuracy of the
    # sphere's own points by ~2e-4 mm; a counted 10 mm blob of ~0.2% of the points moves it by ~0.015 mm
    same = 2e-3
    unobserved = trimesh.util.concatenate([mesh, blob_far])
    observed = trimesh.util.concatenate([mesh, blob_near])
    assert evaluate_mesh(unobserved.vertices, unobserved.faces, gt).accuracy == pytest.approx(base.accuracy, abs=same)
    assert evaluate_mesh(observed.vertices, observed.faces, gt).accuracy > base.accuracy + 0.01
    # only ground truth above the plane z = centre counts for completeness: removing the lower half of the
    # mesh leaves completeness about unchanged, removing the upper half does not
    upper = mesh.slice_plane(CENTRE - [0, 0, 2.0], [0, 0, 1.0])
    lower = mesh.slice_plane(CENTRE + [0, 0, 2.0], [0, 0, -1.0])
    assert evaluate_mesh(upper.vertices, upper.faces, gt).completeness < 0.15
    assert evaluate_mesh(lower.vertices, lower.faces, gt).completeness > 5.0
    # a blob beyond max_dist (25 mm off) changes nothing
    blob_out = trimesh.creation.icosphere(2, radius=1.0)
    blob_out.apply_translation(CENTRE - [31.0 + 25.0, 0, 0])
    outlier = trimesh.util.concatenate([mesh, blob_out])
    assert evaluate_mesh(outlier.vertices, outlier.faces, gt).accuracy == pytest.approx(base.accuracy, abs=same)


def test_command_and_script_write_json_and_refuse_to_overwrite(tmp_path, capsys):
    mesh = sphere(30.0, subdivisions=3)
    root = write_ground_truth(tmp_path / "dtu", sphere(30.0))
    mesh_path = tmp_path / "mesh.ply"
    mesh.export(str(mesh_path))
    out = tmp_path / "res.json"
    argv = ["--mesh", str(mesh_path), "--scan", str(SCAN), "--dataset-dir", str(root), "--out", str(out)]
    assert main(["eval-dtu", *argv, "--visualize"]) == 0
    record = json.loads(out.read_text())
    assert {"accuracy", "completeness", "overall"} <= set(record) and record["overall"] < 0.5
    assert (tmp_path / "res_accuracy.ply").exists() and (tmp_path / "res_completeness.ply").exists()
    assert main(["eval-dtu", *argv]) == 2
    assert "pass --overwrite" in capsys.readouterr().out
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "eval_dtu.py"), *argv, "--overwrite"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert json.loads(out.read_text())["overall"] == pytest.approx(record["overall"])


def test_bad_ground_truth_and_meshes(tmp_path):
    mesh = sphere(30.0, subdivisions=2)
    mesh_path = tmp_path / "mesh.ply"
    mesh.export(str(mesh_path))
    root = write_ground_truth(tmp_path / "dtu", sphere(30.0, subdivisions=2))
    with pytest.raises(UserError, match=r"ObsMask99_10\.mat"):
        run_evaluation(mesh_path, 99, root, tmp_path / "a.json")
    (root / "ObsMask" / f"Plane{SCAN}.mat").unlink()
    with pytest.raises(UserError, match=rf"Plane{SCAN}\.mat"):
        run_evaluation(mesh_path, SCAN, root, tmp_path / "a.json")
    savemat(str(root / "ObsMask" / f"Plane{SCAN}.mat"), {"Q": np.zeros((4, 1))})
    with pytest.raises(UserError, match=r"no 'P'"):
        run_evaluation(mesh_path, SCAN, root, tmp_path / "a.json")
    empty = tmp_path / "empty.ply"
    empty.write_text(
        "ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nproperty float y\nproperty float z\n"
        "element face 0\nproperty list uchar int vertex_indices\nend_header\n"
    )
    with pytest.raises(UserError, match="is empty"):
        run_evaluation(empty, SCAN, root, tmp_path / "a.json")
    open_mesh = tmp_path / "open.ply"
    mesh.slice_plane(CENTRE, [0, 0, 1.0]).export(str(open_mesh))
    savemat(str(root / "ObsMask" / f"Plane{SCAN}.mat"), {"P": np.array([[0.0], [0.0], [0.0], [1.0]])})
    with pytest.warns(UserWarning, match="not watertight"):
        run_evaluation(open_mesh, SCAN, root, tmp_path / "b.json")
    far = sphere(30.0, subdivisions=2)
    far.apply_translation([5000.0, 0, 0])
    far_path = tmp_path / "far.ply"
    far.export(str(far_path))
    with pytest.raises(UserError, match="DTU world coordinates"):
        run_evaluation(far_path, SCAN, root, tmp_path / "c.json")


def test_mask_culling_removes_what_no_view_sees(tmp_path):
    """One camera looking at the sphere, a mask covering only the image's left half: the culled mesh keeps
    the vertices projecting there (and the ones outside the image), drops the rest."""
    import imageio.v3 as iio

    mesh = sphere(30.0, subdivisions=3)
    K = np.array([[100.0, 0, 64], [0, 100.0, 64], [0, 0, 1]])
    c2w = np.eye(4)
    c2w[:3, 3] = CENTRE - [0, 0, 200.0]  # OpenCV camera looking along +z at the sphere
    np.savez(tmp_path / "cameras_sphere.npz", world_mat_0=compose_projection(K, c2w), scale_mat_0=np.eye(4))
    (tmp_path / "mask").mkdir()
    mask = np.zeros((128, 128), dtype=np.uint8)
    mask[:, :64] = 255
    iio.imwrite(tmp_path / "mask" / "000.png", mask)
    from nerf_norm.dtu_eval import cull_by_masks

    v, f = cull_by_masks(mesh.vertices, mesh.faces, tmp_path / "cameras_sphere.npz", tmp_path / "mask", dilation=0)
    assert 0 < len(f) < len(mesh.faces)
    assert np.all(v[:, 0] <= CENTRE[0] + 1e-6 + 2 * 30.0 / 100)  # only the left half (x <= centre) remains
    with pytest.raises(UserError, match="has 1 cameras .* holds 2 masks"):  # more masks than cameras
        cull_by_masks(
            mesh.vertices, mesh.faces, tmp_path / "cameras_sphere.npz", _two_masks(tmp_path, mask), dilation=0
        )
    np.savez(tmp_path / "two_cams.npz", world_mat_0=compose_projection(K, c2w), world_mat_1=compose_projection(K, c2w))
    with pytest.raises(UserError, match="has 2 cameras .* holds 1 masks"):  # fewer masks than cameras
        cull_by_masks(mesh.vertices, mesh.faces, tmp_path / "two_cams.npz", tmp_path / "mask", dilation=0)


def _two_masks(tmp_path: Path, mask: np.ndarray) -> Path:
    import imageio.v3 as iio

    folder = tmp_path / "two"
    folder.mkdir()
    for i in range(2):
        iio.imwrite(folder / f"{i:03}.png", mask)
    return folder


@pytest.mark.parametrize(
    "option, message",
    [
        ({"max_dist": 0.0}, "--max-dist must be a positive finite number"),
        ({"max_dist": float("nan")}, "--max-dist must be a positive finite number"),
        ({"density": float("nan")}, "--density must be a positive finite number"),
        ({"density": -0.2}, "--density must be a positive finite number"),
        ({"dilation": -3}, "--dilation must be a number of pixels >= 0"),
        ({"density": 1e-4}, "needs about .* GiB of memory"),
    ],
)
def test_bad_options_fail_before_any_work(tmp_path, option, message):
    mesh_path = tmp_path / "mesh.ply"
    sphere(30.0, subdivisions=2).export(str(mesh_path))
    root = write_ground_truth(tmp_path / "dtu", sphere(30.0, subdivisions=2))
    with pytest.raises(UserError, match=message):
        run_evaluation(mesh_path, SCAN, root, tmp_path / "a.json", **option)
    assert not (tmp_path / "a.json").exists()


def test_nan_vertex_is_named(tmp_path):
    mesh = sphere(30.0, subdivisions=2)
    vertices = np.array(mesh.vertices)
    vertices[5] = np.nan
    path = tmp_path / "nan.ply"
    trimesh.Trimesh(vertices, mesh.faces, process=False).export(str(path))
    root = write_ground_truth(tmp_path / "dtu", sphere(30.0, subdivisions=2))
    with pytest.raises(UserError, match="1 vertices with NaN or infinite coordinates .*vertex 5"):
        run_evaluation(path, SCAN, root, tmp_path / "a.json")
