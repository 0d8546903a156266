"""Sparse-view 2D computed tomography (paper section 5.3, Table 4, Fig. 7).

The network maps pixel coordinates in ``[-1, 1]^2`` to attenuation. Its image is projected by the
differentiable parallel-beam projector (:class:`nerf_norm.radon.ParallelBeamProjector`) at ``projections``
angles evenly spaced over ``[0, 180)`` degrees, and the loss is the MSE to the measured sinogram, which is the
ground-truth image projected by the same operator (noise free). Training is full batch (all pixels).

Data: a grayscale slice, zero-padded to a square (centred), resampled to ``size x size`` (anti-aliased) and
divided by its maximum, so attenuation lies in ``[0, 1]``. PSNR and SSIM compare the reconstruction (clamped to
``[0, 1]``) with that image. For context, ``fbp_psnr`` / ``fbp_ssim`` are those of filtered back projection
(scikit-image ``iradon``, ramp filter) from the same measurements.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch
from torch import Tensor

from ..errors import UserError, require_memory
from ..radon import ParallelBeamProjector, uniform_angles
from .base import Task
from .fit import FitCommand, run_fit
from .grids import coordinate_grid, psnr, ssim

log = logging.getLogger(__name__)

__all__ = ["CTTask", "load_slice", "DEFAULT_SLICE_NAME"]

DEFAULT_SLICE_NAME = "Shepp-Logan phantom (scikit-image sample data)"


def load_slice(path: Optional[Path], size: int) -> tuple[np.ndarray, str]:
    """A CT slice as float32 ``[size, size]`` in ``[0, 1]`` (maximum 1); default: the Shepp-Logan phantom."""
    from skimage.transform import resize

    from .image import load_image

    if path is None:
        from skimage.data import shepp_logan_phantom

        img, source = shepp_logan_phantom().astype(np.float32), DEFAULT_SLICE_NAME
    else:
        img, source = load_image(path)  # [H, W, C]: a 3D stack or other layout is refused there
        if img.shape[-1] == 3:
            if not (np.allclose(img[..., 0], img[..., 1]) and np.allclose(img[..., 0], img[..., 2])):
                raise UserError(f"CT slice {path} is a colour image; expected a single-channel (grayscale) slice")
            log.info("CT slice %s is stored as RGB with equal channels; using one channel", path)
        img = img[..., 0]
    h, w = img.shape
    side = max(h, w)
    square = np.zeros((side, side), dtype=np.float32)
    top, left = (side - h) // 2, (side - w) // 2
    square[top : top + h, left : left + w] = img
    if side != size:
        square = resize(square, (size, size), anti_aliasing=side > size).astype(np.float32)
    peak = float(square.max())
    if not peak > 0:
        raise UserError(f"CT slice {source} is all zero: nothing to reconstruct")
    return np.clip(square / peak, 0.0, 1.0), source


def check_ct_options(projections: int, size: int) -> None:
    """The CT task's option values (checked by the command before anything runs, and by the task)."""
    if projections < 1:
        raise UserError(f"--projections must be at least 1, got {projections}")
    if size < 16:
        raise UserError(f"--size must be at least 16 pixels, got {size}")


class CTTask(Task):
    """Reconstruct a slice from its sinogram: ``[N^2, 2]`` pixel coordinates -> ``[N^2, 1]`` attenuation."""

    name = "ct"
    progress_metric = "psnr"
    outputs = ("reconstruction.png", "target.png", "error.png", "sinogram.png")
    track_best = True
    in_dim = 2
    out_dim = 1

    def __init__(self, image: Optional[Path] = None, projections: int = 100, size: int = 256) -> None:
        check_ct_options(projections, size)
        # the projector samples every angle on a size x size grid: the sampling grid (2 float32) and the samples,
        # kept for backward, per angle
        require_memory(f"a {size}x{size} CT grid with {projections} projections", projections * size**2 * 16.0)
        img, self.source = load_slice(image, size)
        self.size, self.projections = size, projections
        self.target = torch.from_numpy(img)
        self.projector = ParallelBeamProjector(size, uniform_angles(projections))
        with torch.no_grad():
            self.sinogram = self.projector(self.target)  # [A, D] measurements
        self._coords = coordinate_grid((size, size))

    def coords(self) -> Tensor:
        return self._coords

    def image(self, pred: Tensor) -> Tensor:
        """``[N^2, 1]`` network output -> ``[N, N]`` attenuation image (float32, as the projector runs)."""
        return pred.float().reshape(self.size, self.size)

    def loss(self, pred: Tensor, index: Optional[Tensor] = None) -> Tensor:
        return torch.mean((self.projector(self.image(pred)) - self.sinogram) ** 2)

    def progress(self, pred: Tensor, index: Optional[Tensor] = None) -> float:
        return psnr(self.image(pred), self.target)

    def filtered_back_projection(self) -> Tensor:
        """FBP (scikit-image ``iradon``, ramp filter) of the measurements, ``[N, N]``: the classical baseline."""
        from skimage.transform import iradon

        sino = (self.sinogram * self.size).T.numpy().astype(np.float64)  # skimage: [bins, angles], pixel sums
        rec = iradon(
            sino,
            theta=self.projector.angles.numpy().astype(np.float64),
            output_size=self.size,
            circle=False,
            filter_name="ramp",
        )
        return torch.from_numpy(rec.astype(np.float32))

    def evaluate(self, pred: Tensor) -> Dict[str, float]:
        img = self.image(pred)
        fbp = self.filtered_back_projection()
        return {
            "psnr": psnr(img, self.target),
            "ssim": ssim(img, self.target),
            "sinogram_mse": float(self.loss(pred)),
            "fbp_psnr": psnr(fbp, self.target),
            "fbp_ssim": ssim(fbp, self.target),
        }

    def describe(self) -> Dict[str, object]:
        return {"task": self.name, "image": self.source, "size": self.size, "projections": self.projections}

    def save_outputs(self, pred: Tensor, out_dir: Path) -> Dict[str, Path]:
        import imageio.v3 as iio

        from ..plotting import pyplot

        plt = pyplot()

        out_dir = Path(out_dir)
        img = self.image(pred).clamp(0.0, 1.0)
        outputs = {
            "reconstruction": out_dir / "reconstruction.png",
            "target": out_dir / "target.png",
            "error": out_dir / "error.png",
            "sinogram": out_dir / "sinogram.png",
        }
        iio.imwrite(outputs["reconstruction"], (img.numpy() * 255).round().astype(np.uint8))
        iio.imwrite(outputs["target"], (self.target.numpy() * 255).round().astype(np.uint8))
        err = (img - self.target).abs().numpy()
        fig, ax = plt.subplots(figsize=(5, 4.2))
        shown = ax.imshow(err, cmap="inferno", vmin=0.0, vmax=max(0.1, float(err.max())))
        ax.set_title(f"|reconstruction - target|, PSNR {psnr(img, self.target):.2f} dB")
        ax.axis("off")
        fig.colorbar(shown, ax=ax, fraction=0.046)
        fig.tight_layout()
        fig.savefig(outputs["error"], dpi=110)
        plt.close(fig)
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
        with torch.no_grad():
            fitted = self.projector(self.image(pred))
        for ax, sino, title in ((axes[0], self.sinogram, "measured"), (axes[1], fitted, "of the reconstruction")):
            ax.imshow(sino.numpy().T, cmap="gray", aspect="auto", extent=(0, 180, sino.shape[1], 0))
            ax.set_title(f"sinogram {title}")
            ax.set_xlabel("angle (degrees)")
        axes[0].set_ylabel("detector bin")
        fig.tight_layout()
        fig.savefig(outputs["sinogram"], dpi=110)
        plt.close(fig)
        return outputs


# the `nerf-norm ct` command


@dataclass
class CTCommand(FitCommand):
    """Reconstruct a CT slice from sparse parallel-beam projections (paper section 5.3): MSE on the sinogram.

    Writes OUT/reconstruction.png, OUT/target.png, OUT/error.png (error map), OUT/sinogram.png, OUT/curve.png,
    OUT/metrics.json (PSNR, SSIM, and filtered back projection's for context) and OUT/checkpoint.pt.
    """

    image: Optional[Path] = None
    """grayscale slice (PNG, TIFF, ...; 8 or 16 bit); default: scikit-image's Shepp-Logan phantom"""
    projections: int = 100
    """projection angles, evenly spaced over [0, 180) degrees (paper: 100)"""
    size: int = 256
    """reconstruction grid in pixels per side (paper: 512; 256 is the CPU default)"""
    arch: str = "2x256"
    """hidden layers x hidden features (paper: 2x128, 2x256, 4x128, 4x256)"""
    out: Path = Path("outputs/ct")
    """output directory"""
    iters: int = 300
    """training iterations, full batch (paper: 20,000; 300 is the CPU default)"""
    lr: Optional[float] = 5e-3
    """initial Adam learning rate (paper: 5e-3 for every method, decayed to 5e-4)"""

    def validate(self) -> None:
        super().validate()
        check_ct_options(self.projections, self.size)


def run_ct(cmd: CTCommand):
    return run_fit(cmd, lambda: CTTask(cmd.image, cmd.projections, cmd.size))
