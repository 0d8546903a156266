"""The NeuS-layout dataparser (`neus-data`): camera decomposition, normalization, downscaling, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nerf_norm.errors import UserError
from nerf_norm.nerfstudio.neus_dataparser import NeuSDataParserConfig
from nerf_norm.neus_layout import compose_projection, decompose_projection

DTU = Path(__file__).resolve().parents[2] / "shared" / "data" / "dtu" / "dtu_scan65"


def _look_at(centre: np.ndarray) -> np.ndarray:
    """OpenCV camera-to-world at ``centre`` looking at the origin (y down)."""
    z = -centre / np.linalg.norm(centre)
    x = np.cross([0.0, 0.0, 1.0], z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([x, y, z], axis=1)
    c2w[:3, 3] = centre
    return c2w


def make_scene(root: Path, views: int = 3, masks: int = 3, size=(32, 24), drop_key: str = "") -> dict:
    (root / "image").mkdir(parents=True)
    (root / "mask").mkdir()
    K = np.array([[40.0, 0.0, 16.0], [0.0, 41.0, 12.0], [0.0, 0.0, 1.0]])
    scale = np.diag([2.5, 2.5, 2.5, 1.0])
    scale[:3, 3] = [10.0, -5.0, 300.0]
    poses, arrays = [], {}
    for i in range(views):
        angle = 2 * np.pi * i / views
        c2w = _look_at(np.array([3 * np.cos(angle), 3 * np.sin(angle), 1.0]))
        poses.append(c2w)
        arrays[f"world_mat_{i}"] = compose_projection(K, c2w, scale) * 7.0  # P is defined up to scale
        arrays[f"scale_mat_{i}"] = scale
        Image.fromarray(np.full((size[1], size[0], 3), 40 * i, dtype=np.uint8)).save(root / "image" / f"{i:06}.png")
    for i in range(masks):
        Image.fromarray(np.full((size[1], size[0]), 255, dtype=np.uint8)).save(root / "mask" / f"{i:03}.png")
    arrays.pop(drop_key, None)
    np.savez(root / "cameras_sphere.npz", **arrays)
    return {"K": K, "poses": poses, "scale": scale}


def test_decompose_projection_roundtrip():
    K = np.array([[500.0, 0.5, 320.0], [0.0, 510.0, 240.0], [0.0, 0.0, 1.0]])
    c2w = _look_at(np.array([1.0, -2.0, 3.0]))
    K2, c2w2 = decompose_projection(-3.0 * compose_projection(K, c2w)[:3])
    np.testing.assert_allclose(K2, K, atol=1e-9)
    np.testing.assert_allclose(c2w2, c2w, atol=1e-9)


def test_parser_recovers_cameras_in_nerfstudio_convention(tmp_path):
    truth = make_scene(tmp_path)
    parser = NeuSDataParserConfig(data=tmp_path, eval_every=0).setup()
    out = parser.get_dataparser_outputs("train")
    assert len(out.image_filenames) == 3
    cams = out.cameras
    torch.testing.assert_close(cams.fx[:, 0], torch.full((3,), 40.0))
    torch.testing.assert_close(cams.fy[:, 0], torch.full((3,), 41.0))
    for i, pose in enumerate(truth["poses"]):
        expected = pose.copy()
        expected[:3, 1:3] *= -1  # OpenGL axes
        torch.testing.assert_close(cams.camera_to_worlds[i], torch.from_numpy(expected[:3]).float(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(out.metadata["scale_mat"].numpy(), truth["scale"], atol=1e-6)
    assert out.metadata["fg_masks"] is None


def test_split_downscale_and_masks(tmp_path):
    make_scene(tmp_path / "scene", views=4, masks=4)
    cfg = NeuSDataParserConfig(
        data=tmp_path / "scene", eval_every=2, downscale_factor=2, use_masks=True, cache_dir=tmp_path / "cache"
    )
    train = cfg.setup().get_dataparser_outputs("train")
    test = cfg.setup().get_dataparser_outputs("test")
    assert [p.stem for p in train.image_filenames] == ["000001", "000003"]
    assert [p.stem for p in test.image_filenames] == ["000000", "000002"]
    assert all(p.parent == tmp_path / "cache" / "x2" / "image" for p in train.image_filenames)
    assert Image.open(train.image_filenames[0]).size == (16, 12)
    assert int(train.cameras.width[0]) == 16 and float(train.cameras.fx[0]) == pytest.approx(20.0)
    assert len(train.metadata["fg_masks"]) == 2 and Image.open(train.metadata["fg_masks"][0]).size == (16, 12)


def test_bad_input_names_file_and_field(tmp_path):
    make_scene(tmp_path / "a", drop_key="scale_mat_1")
    with pytest.raises(UserError, match=r"cameras_sphere\.npz: missing key 'scale_mat_1'"):
        NeuSDataParserConfig(data=tmp_path / "a").setup().get_dataparser_outputs("train")
    make_scene(tmp_path / "b", views=3, masks=2)
    with pytest.raises(UserError, match="has 2 masks but .* has 3 images"):
        NeuSDataParserConfig(data=tmp_path / "b", use_masks=True).setup().get_dataparser_outputs("train")
    (tmp_path / "c").mkdir()
    with pytest.raises(UserError, match="image: missing"):
        NeuSDataParserConfig(data=tmp_path / "c").setup().get_dataparser_outputs("train")
    make_scene(tmp_path / "d")
    (tmp_path / "d" / "cameras_sphere.npz").unlink()
    with pytest.raises(UserError, match="camera file not found"):
        NeuSDataParserConfig(data=tmp_path / "d").setup().get_dataparser_outputs("train")
    make_scene(tmp_path / "e")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "e" / "mask" / "001.png")
    with pytest.raises(UserError, match=r"001\.png: mask is 10x10 but the images are 32x24"):
        NeuSDataParserConfig(data=tmp_path / "e", use_masks=True).setup().get_dataparser_outputs("train")
    make_scene(tmp_path / "f")
    cams = dict(np.load(tmp_path / "f" / "cameras_sphere.npz"))
    cams["world_mat_2"][:3, 2] = cams["world_mat_2"][:3, 0]  # two equal columns: no inverse
    np.savez(tmp_path / "f" / "cameras_sphere.npz", **cams)
    with pytest.raises(UserError, match="world_mat_2 .* is singular"):
        NeuSDataParserConfig(data=tmp_path / "f").setup().get_dataparser_outputs("train")
    with pytest.raises(UserError, match="--downscale-factor 64 leaves no pixels of the 32x24 images"):
        NeuSDataParserConfig(data=tmp_path / "e", downscale_factor=64).setup().get_dataparser_outputs("train")


@pytest.mark.slow
def test_ns_train_reports_a_bad_scene_in_one_line(tmp_path):
    """nerfstudio's ns-train, given a scene our parser rejects, ends with our one-line message (no traceback)."""
    import subprocess
    import sys

    make_scene(tmp_path / "b", views=3, masks=2)
    ns_train = Path(sys.executable).parent / "ns-train"
    done = subprocess.run(
        [
            str(ns_train),
            "neus-cn-lite",
            "--data",
            str(tmp_path / "b"),
            "--output-dir",
            str(tmp_path / "out"),
            "--max-num-iterations",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "error: " in done.stderr and "has 2 masks but" in done.stderr


@pytest.mark.skipif(not DTU.is_dir(), reason=f"real DTU data not present at {DTU}")
def test_real_dtu_scan65():
    parser = NeuSDataParserConfig(data=DTU, use_masks=True).setup()
    train, test = parser.get_dataparser_outputs("train"), parser.get_dataparser_outputs("test")
    assert len(train.image_filenames) == 42 and len(test.image_filenames) == 7
    cams = train.cameras
    assert int(cams.width[0]) == 1600 and int(cams.height[0]) == 1200
    centres = cams.camera_to_worlds[:, :3, 3]
    # NeuS normalization: the object in the unit sphere, cameras about 4 units away, looking at it (-z)
    assert torch.all((centres.norm(dim=-1) > 3) & (centres.norm(dim=-1) < 5))
    view = -cams.camera_to_worlds[:, :3, 2]
    assert float(torch.nn.functional.cosine_similarity(view, -centres).min()) > 0.95
    assert float(train.metadata["scale_mat"][0, 0]) == pytest.approx(164.604, abs=1e-2)
