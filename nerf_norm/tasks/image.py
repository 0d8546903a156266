"""2D image fitting / compression (paper section 5.1, Table 2, Figs. 4-5).

The network maps pixel coordinates in ``[-1, 1]^2`` to colour; training is full batch (all pixels) with
an MSE loss. PSNR is measured on the 8-bit output (clamped to [0, 1] and rounded) against the 8-bit
target, SSIM with ``pytorch_msssim`` (11x11 Gaussian window), and the rate as bits per pixel:
``parameters x 16 / pixels`` (half precision) and ``x 32`` (full precision).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Literal, Optional

import numpy as np
import torch
from torch import Tensor

from ..errors import UserError
from .base import Task, console
from .fit import FitCommand, run_fit
from .grids import coordinate_grid, psnr

DEFAULT_IMAGE_NAME = "astronaut (scikit-image sample data)"


def load_image(path: Optional[Path]) -> tuple[np.ndarray, str]:
    """Reads ``path`` (or the bundled default) as float32 ``[H, W, C]`` in [0, 1], C in {1, 3}."""
    if path is None:
        from skimage import data

        return data.astronaut().astype(np.float32) / 255.0, DEFAULT_IMAGE_NAME
    path = Path(path)
    if not path.exists():
        raise UserError(f"image file not found: {path}")
    if not path.is_file():
        raise UserError(f"image path is not a file: {path}")
    import imageio.v3 as iio

    try:
        arr = np.asarray(iio.imread(path))
    except Exception as exc:  # noqa: BLE001 - any decoder failure is the same user-facing problem
        raise UserError(f"cannot read image {path}: {exc.__class__.__name__}: {exc}") from exc
    if arr.ndim == 3 and arr.shape[-1] == 4:
        console.log(f"{path}: RGBA image, the alpha channel is dropped (fitting RGB)")
        arr = arr[..., :3]
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3):
        raise UserError(f"image {path} has shape {arr.shape}; expected a 2D grayscale, RGB or RGBA image")
    if arr.dtype == np.uint8:
        img = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        img = arr.astype(np.float32) / 65535.0
    elif np.issubdtype(arr.dtype, np.floating):
        img = _unit_range(arr.astype(np.float32), path)
    else:
        raise UserError(f"image {path} has unsupported pixel type {arr.dtype}")
    if min(img.shape[:2]) < 16:
        raise UserError(f"image {path} is {img.shape[1]}x{img.shape[0]}; need at least 16 pixels on a side")
    return img, str(path)


def _unit_range(img: np.ndarray, path: Path) -> np.ndarray:
    """A floating-point image ``[H, W, C]`` as the fit takes it: finite values, clipped to [0, 1] (said once when
    any value lies outside; NaN or infinite values are refused, naming the first one)."""
    bad = ~np.isfinite(img)
    if bad.any():
        row, col = np.argwhere(bad)[0][:2]
        raise UserError(
            f"image {path} has {int(bad.any(axis=-1).sum())} pixel(s) with NaN or infinite values (the first at "
            f"row {row}, column {col}); expected finite values in [0, 1]"
        )
    lo, hi = float(img.min()), float(img.max())
    if lo < 0.0 or hi > 1.0:
        console.log(
            f"{path}: floating-point values span [{lo:g}, {hi:g}], outside the expected [0, 1]; "
            "they are clipped to [0, 1] (rescale the image first to keep them)"
        )
    return np.clip(img, 0.0, 1.0)


def quantize8(x: Tensor) -> Tensor:
    """Clamps to [0, 1] and rounds to the 8-bit grid (values stay in [0, 1])."""
    return torch.round(x.clamp(0.0, 1.0) * 255.0) / 255.0


def psnr8(pred: Tensor, target8: Tensor) -> float:
    """PSNR in dB of the 8-bit output against the 8-bit target (both in [0, 1])."""
    return psnr(quantize8(pred), target8)


#: pixel-coordinate conventions: ``unit`` spans [-1, 1] on both axes (ours); ``authors`` divides both axes by
#: H - 1 as the authors' released code does, so a non-square image's x spans [-1, 2 (W - 1) / (H - 1) - 1]
#: (on a 768x512 Kodak image: [-1, 2])
GRIDS = ("unit", "authors")


def pixel_grid(height: int, width: int, grid: str = "unit") -> Tensor:
    """Pixel coordinates, row-major, ``[H * W, 2]`` as (y, x): ``y = 2 i / (H - 1) - 1`` and ``x = 2 j / (W - 1) - 1``
    (``grid="unit"``: both in [-1, 1]) or ``x = 2 j / (H - 1) - 1`` (``grid="authors"``: the released code's)."""
    if grid == "unit":
        return coordinate_grid((height, width))
    if grid != "authors":
        raise ValueError(f"unknown pixel grid {grid!r}; expected one of {', '.join(GRIDS)}")
    step = 2.0 / max(height - 1, 1)
    y = torch.arange(height, dtype=torch.float32) * step - 1.0
    x = torch.arange(width, dtype=torch.float32) * step - 1.0
    return torch.stack(torch.meshgrid(y, x, indexing="ij"), dim=-1).reshape(-1, 2)


def check_image_options(downscale: Optional[int], grid: str = "unit") -> None:
    """The image task's option values (checked by the command before anything runs, and by the task)."""
    if downscale is not None and downscale < 1:
        raise UserError(f"--downscale must be a positive integer, got {downscale}")
    if grid not in GRIDS:
        raise UserError(f"--grid must be one of {', '.join(GRIDS)}, got {grid!r}")


class ImageTask(Task):
    """Fit an image: ``[H * W, 2]`` coordinates -> ``[H * W, C]`` colours."""

    name = "image"
    progress_metric = "psnr"
    outputs = ("reconstruction.png", "target.png", "spectrum.png")
    track_best = True

    def __init__(self, image: Optional[Path] = None, downscale: int = 1, grid: str = "unit") -> None:
        check_image_options(downscale, grid)
        img, self.source = load_image(image)
        if downscale > 1:
            from skimage.transform import resize

            h, w = img.shape[0] // downscale, img.shape[1] // downscale
            if min(h, w) < 16:
                raise UserError(f"--downscale {downscale} leaves {w}x{h} pixels; need at least 16 on a side")
            console.log(f"image resampled from {img.shape[1]}x{img.shape[0]} to {w}x{h} (--downscale {downscale})")
            img = resize(img, (h, w), anti_aliasing=True).astype(np.float32)
        self.downscale = downscale
        self.height, self.width, self.channels = img.shape
        self.target = quantize8(torch.from_numpy(np.ascontiguousarray(img)).reshape(-1, self.channels))
        self.grid = grid
        self._coords = pixel_grid(self.height, self.width, grid)

    @property
    def in_dim(self) -> int:
        return 2

    @property
    def out_dim(self) -> int:
        return self.channels

    @property
    def num_pixels(self) -> int:
        return self.height * self.width

    def coords(self) -> Tensor:
        return self._coords

    def loss(self, pred: Tensor, index: Optional[Tensor] = None) -> Tensor:
        return torch.mean((pred - self.target) ** 2)

    def progress(self, pred: Tensor, index: Optional[Tensor] = None) -> float:
        return psnr8(pred, self.target)

    def _as_image(self, flat: Tensor) -> Tensor:
        """``[H * W, C]`` -> ``[1, C, H, W]``"""
        return flat.reshape(self.height, self.width, self.channels).permute(2, 0, 1).unsqueeze(0)

    def evaluate(self, pred: Tensor) -> Dict[str, float]:
        from pytorch_msssim import ssim

        pred8 = quantize8(pred)
        ssim_val = ssim(self._as_image(pred8), self._as_image(self.target), data_range=1.0).item()
        return {"psnr": psnr8(pred, self.target), "ssim": ssim_val}

    def rate(self, params: int) -> Dict[str, float]:
        return {"bpp_half": params * 16 / self.num_pixels, "bpp_full": params * 32 / self.num_pixels}

    def describe(self) -> Dict[str, object]:
        return {
            "task": self.name,
            "image": self.source,
            "downscale": self.downscale,
            "height": self.height,
            "width": self.width,
            "grid": self.grid,
        }

    def to_numpy_image(self, flat: Tensor) -> np.ndarray:
        img = (quantize8(flat) * 255).round().to(torch.uint8).reshape(self.height, self.width, self.channels)
        arr = img.cpu().numpy()
        return arr[..., 0] if self.channels == 1 else arr

    def save_outputs(self, pred: Tensor, out_dir: Path) -> Dict[str, Path]:
        import imageio.v3 as iio

        out_dir = Path(out_dir)
        recon = out_dir / "reconstruction.png"
        target = out_dir / "target.png"
        iio.imwrite(recon, self.to_numpy_image(pred))
        iio.imwrite(target, self.to_numpy_image(self.target))
        spectrum = out_dir / "spectrum.png"
        self._plot_spectrum(pred, spectrum)
        return {"reconstruction": recon, "target": target, "spectrum": spectrum}

    @staticmethod
    def log_spectrum(img: np.ndarray) -> np.ndarray:
        """log(1 + |FFT|) of the luminance, zero frequency in the centre."""
        gray = img.astype(np.float64).mean(axis=-1) if img.ndim == 3 else img.astype(np.float64)
        return np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(gray / 255.0))))

    def _plot_spectrum(self, pred: Tensor, path: Path) -> None:
        from ..plotting import pyplot

        plt = pyplot()

        target_img, pred_img = self.to_numpy_image(self.target), self.to_numpy_image(pred)
        spec_t, spec_p = self.log_spectrum(target_img), self.log_spectrum(pred_img)
        vmax = max(spec_t.max(), spec_p.max())
        fig, axes = plt.subplots(2, 2, figsize=(8, 8))
        cmap = None if self.channels == 3 else "gray"
        for ax, im, title in ((axes[0, 0], target_img, "target"), (axes[0, 1], pred_img, "reconstruction")):
            ax.imshow(im, cmap=cmap)
            ax.set_title(title)
        for ax, spec, title in (
            (axes[1, 0], spec_t, "target spectrum"),
            (axes[1, 1], spec_p, "reconstruction spectrum"),
        ):
            ax.imshow(spec, cmap="magma", vmin=0, vmax=vmax)
            ax.set_title(f"{title} (log |FFT|)")
        for ax in axes.ravel():
            ax.set_xticks([])
            ax.set_yticks([])
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)


# the `nerf-norm image` command


@dataclass
class ImageCommand(FitCommand):
    """Fit an image with a coordinate network (paper section 5.1): full batch, MSE, Adam.

    Writes OUT/reconstruction.png, OUT/spectrum.png (Fourier spectra of target and reconstruction),
    OUT/curve.png, OUT/metrics.json (PSNR, SSIM, parameters, bpp) and OUT/checkpoint.pt (resumable).
    """

    image: Optional[Path] = None
    """image file (PNG, JPEG, TIFF, ...); default: scikit-image's bundled astronaut photograph"""
    arch: str = "10x28"
    """hidden layers x hidden features, e.g. 5x20, 10x28, 13x49"""
    downscale: Optional[int] = None
    """integer downscaling of the image before fitting; default: 1 (the image as given) for --image, 4 for the
    bundled 512x512 default (128x128)"""
    out: Path = Path("outputs/image")
    """output directory"""
    iters: int = 500
    """training iterations (full batch each)"""
    grid: Literal["unit", "authors"] = "unit"
    """pixel coordinates: unit ([-1, 1] on both axes) or authors (both axes divided by H - 1, as the authors'
    released code does: on a non-square image x then spans [-1, 2 (W - 1) / (H - 1) - 1])"""

    def validate(self) -> None:
        super().validate()
        check_image_options(self.downscale, self.grid)


def run_image(cmd: ImageCommand):
    """Runs the image task for ``cmd``; returns the fit and the task (its source and size)."""
    downscale = cmd.downscale if cmd.downscale is not None else (1 if cmd.image is not None else 4)
    return run_fit(cmd, lambda: ImageTask(cmd.image, downscale, cmd.grid))
