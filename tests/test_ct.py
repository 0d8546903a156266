"""CT task: the projector against scikit-image, the task's data handling, the CLI, bad input, and learning."""

import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from conftest import squash

from nerf_norm.cli import main
from nerf_norm.radon import ParallelBeamProjector, detector_bins, uniform_angles
from nerf_norm.tasks.commands import CTCommand, run_ct
from nerf_norm.tasks.ct import load_slice

# Stated tolerance of the projector against skimage.transform.radon(circle=False): the same geometry and
# bilinear interpolation in float32, so the largest difference is float rounding (measured 3e-6 of the peak).
RADON_RTOL = 1e-5


@pytest.mark.parametrize("size", [64, 65])
def test_projector_matches_skimage_radon(size):
    from skimage.data import shepp_logan_phantom
    from skimage.transform import radon, resize

    image = resize(shepp_logan_phantom(), (size, size), anti_aliasing=True)
    theta = np.concatenate([uniform_angles(40).numpy(), [7.3, 91.0, 179.9, 250.0]])
    expected = radon(image, theta, circle=False)  # [bins, angles], sums of pixels
    projector = ParallelBeamProjector(size, theta, pixel_size=1.0)
    got = projector(torch.from_numpy(image).float()).numpy().T
    assert got.shape == expected.shape == (detector_bins(size), len(theta))
    assert np.abs(got - expected).max() <= RADON_RTOL * np.abs(expected).max()


def test_projector_is_linear_batched_and_scaled():
    torch.manual_seed(0)
    projector = ParallelBeamProjector(32, uniform_angles(12))
    a, b = torch.rand(32, 32), torch.rand(32, 32)
    both = projector(torch.stack([a, b]))
    assert both.shape == (2, 12, detector_bins(32))
    torch.testing.assert_close(both[0], projector(a))
    torch.testing.assert_close(projector(2 * a - b), 2 * both[0] - both[1], rtol=1e-5, atol=1e-5)
    # default pixel size 1/N: every projection of a smooth centred blob carries the image's mass / N
    yy, xx = torch.meshgrid(torch.arange(32.0) - 16, torch.arange(32.0) - 16, indexing="ij")
    blob = torch.exp(-(xx**2 + yy**2) / (2 * 3.0**2))
    torch.testing.assert_close(projector(blob).sum(dim=1), torch.full((12,), blob.sum().item() / 32), rtol=1e-3, atol=0)
    with pytest.raises(ValueError):
        projector(torch.rand(31, 32))


def test_slice_loading(tmp_path):
    img, source = load_slice(None, 64)
    assert img.shape == (64, 64) and img.max() == pytest.approx(1.0) and img.min() >= 0 and "Shepp" in source
    # 16-bit, non-square: padded to a square, scaled to max 1
    raw = np.zeros((40, 60), dtype=np.uint16)
    raw[10:30, 20:40] = 30000
    iio.imwrite(tmp_path / "slice.png", raw)
    img, _ = load_slice(tmp_path / "slice.png", 60)
    assert img.shape == (60, 60) and img.max() == pytest.approx(1.0)
    assert img[:10].max() == 0 and img[50:].max() == 0  # 10 rows of padding above and below


def test_ct_cli_on_default_phantom(tmp_path, cli_output):
    out = tmp_path / "ct"
    code = main(
        ["ct", "--size", "32", "--projections", "20", "--iters", "3", "--arch", "2x32", "--quiet", "--out", str(out)]
    )
    assert code == 0, cli_output()
    record = json.loads((out / "metrics.json").read_text())
    assert record["run"]["projections"] == 20 and "Shepp" in record["run"]["image"]
    assert record["metrics"]["iterations"] == 3 and record["metrics"]["fbp_psnr"] > 10
    for name in ("reconstruction.png", "target.png", "error.png", "sinogram.png", "curve.png", "checkpoint.pt"):
        assert (out / name).is_file(), name
    assert iio.imread(out / "reconstruction.png").shape == (32, 32)


def test_ct_cli_on_real_chest_slice(shared_data, tmp_path, cli_output):
    out = tmp_path / "chest"
    code = main(
        [
            "ct",
            "--image",
            str(shared_data / "ct" / "chest.png"),
            "--size",
            "48",
            "--iters",
            "2",
            "--arch",
            "2x32",
            "--quiet",
            "--out",
            str(out),
        ]
    )
    assert code == 0, cli_output()
    record = json.loads((out / "metrics.json").read_text())
    assert record["run"]["image"].endswith("chest.png") and record["run"]["projections"] == 100
    # the recorded PSNR is that of the images written (8-bit rounding moves it by far less than 0.05 dB at this
    # quality), and filtered back projection from 100 projections is far ahead of a 2-step network
    target = iio.imread(out / "target.png").astype(np.float64) / 255
    recon = iio.imread(out / "reconstruction.png").astype(np.float64) / 255
    assert target.shape == recon.shape == (48, 48)
    psnr_png = -10 * np.log10(np.mean((recon - target) ** 2))
    metrics = record["metrics"]
    assert abs(psnr_png - metrics["psnr"]) < 0.05, (psnr_png, metrics["psnr"])
    assert metrics["fbp_psnr"] > metrics["psnr"] + 3, metrics


def test_ct_bad_input(tmp_path, cli_output):
    code = main(["ct", "--projections", "0", "--out", str(tmp_path / "a")])
    err = cli_output()
    assert code == 2 and squash("--projections must be at least 1") in err
    stack = (np.random.default_rng(0).random((4, 32, 32)) * 255).astype(np.uint8)
    iio.imwrite(tmp_path / "stack.tif", stack)
    code = main(["ct", "--image", str(tmp_path / "stack.tif"), "--out", str(tmp_path / "b")])
    err = cli_output()
    assert code == 2 and squash("(4, 32, 32)") in err and squash("expected a 2D") in err
    colour = np.zeros((32, 32, 3), dtype=np.uint8)
    colour[..., 0] = 200
    iio.imwrite(tmp_path / "colour.png", colour)
    code = main(["ct", "--image", str(tmp_path / "colour.png"), "--out", str(tmp_path / "c")])
    err = cli_output()
    assert code == 2 and squash("colour image") in err
    code = main(["ct", "--image", str(tmp_path / "missing.png"), "--out", str(tmp_path / "d")])
    err = cli_output()
    assert code == 2 and squash("not found") in err


@pytest.mark.slow
def test_pe_cn_beats_pe_on_ct(tmp_path):
    """Shepp-Logan 64x64, 100 projections, 2x256, 300 iterations: CN lifts the paper's PE (its CT claim).

    Measured 2026-12-04 at seeds 0, 1, 2: pe 16.67 / 16.57 / 16.55 dB, pe+cn 18.23 / 18.46 / 19.09 (gains 1.56,
    1.89, 2.54); asserted at seed 0: 0.75 dB, half the smallest gain. ReLU vs ReLU+CN is no test at such budgets:
    gains of 0.46, -0.10, 0.25 dB at 2x128 (300 iterations) and 0.25, 0.02, 0.51 at 2x256 (600) over the same
    seeds; benchmarks/results/ct_long.md shows CN passing ReLU only after 800-1600 iterations."""
    psnr = {}
    for method in ("pe", "pe+cn"):
        cmd = CTCommand(method=method, arch="2x256", size=64, iters=300, seed=0, quiet=True, out=tmp_path / method)
        result, _ = run_ct(cmd)
        psnr[method] = result.metrics["psnr"]
    assert psnr["pe+cn"] > psnr["pe"] + 0.75, psnr
