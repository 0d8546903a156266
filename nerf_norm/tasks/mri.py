"""3D MRI reconstruction from undersampled Fourier coefficients (paper section 5.4, Table 5, Fig. 8).

The network maps voxel coordinates in ``[-1, 1]^3`` to intensity on the volume's grid (paper 96^3). The
measurements are the volume's 3D discrete Fourier coefficients (``torch.fft.fftn``, orthonormal) on a random
variable-density mask: with ``r`` the frequency radius in fractions of each axis' Nyquist frequency, every
coefficient with ``r <= center`` is measured, and one farther out with probability
``min(1, s * exp(-r^2 / (2 * 0.3^2)))``, the scale ``s`` set (by bisection) so that the
expected measured fraction is ``sampling``; the draw uses its own seed (``mask_seed``), independent of the
network's. The loss is the mean squared magnitude of the difference on the measured coefficients; training is
full batch. PSNR and SSIM (3D, 11-tap window) compare the reconstruction, clamped to ``[0, 1]``, with the
volume. For context, ``zero_filled_psnr`` / ``zero_filled_ssim`` score the inverse FFT of the measurements
with the missing coefficients set to zero.

Data: a NIfTI (``.nii``/``.nii.gz``, nibabel), TIFF stack or ``.npy`` volume at its own shape, its intensities
rescaled to ``[0, 1]`` (min-max; clipped to the 0.01-99.99 percentiles first when a few outliers would squash
the rest), and resampled to ``R^3`` only with ``--resolution R`` (each axis independently, anti-aliased when
shrinking); each change is printed once. Default: a generated 3D Shepp-Logan-style head phantom of ellipsoids
at 32^3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from ..errors import UserError, require_memory
from .base import Task, console
from .fit import FitCommand, run_fit
from .grids import coordinate_grid, psnr, ssim

__all__ = ["MRITask", "load_volume", "head_phantom", "variable_density_mask", "DEFAULT_VOLUME_NAME"]

DEFAULT_VOLUME_NAME = "3D head phantom (generated)"
DEFAULT_RESOLUTION = 32

# (intensity added, semi-axes a b c, centre x y z, rotation about z in degrees); coordinates in [-1, 1]^3
_ELLIPSOIDS = (
    (1.0, (0.69, 0.92, 0.81), (0.0, 0.0, 0.0), 0.0),
    (-0.8, (0.62, 0.84, 0.73), (0.0, -0.0184, 0.0), 0.0),
    (-0.2, (0.11, 0.31, 0.22), (0.22, 0.0, 0.0), -18.0),
    (-0.2, (0.16, 0.41, 0.28), (-0.22, 0.0, 0.0), 18.0),
    (0.1, (0.21, 0.25, 0.41), (0.0, 0.35, -0.15), 0.0),
    (0.1, (0.046, 0.046, 0.05), (0.0, 0.1, 0.25), 0.0),
    (0.1, (0.046, 0.046, 0.05), (0.0, -0.1, 0.25), 0.0),
    (0.1, (0.046, 0.023, 0.05), (-0.08, -0.605, 0.0), 0.0),
    (0.1, (0.023, 0.023, 0.02), (0.0, -0.606, 0.0), 0.0),
    (0.1, (0.023, 0.046, 0.02), (0.06, -0.605, 0.0), 0.0),
)


def head_phantom(resolution: int, supersample: int = 2) -> np.ndarray:
    """A 3D Shepp-Logan-style phantom (skull, brain, ventricles, small lesions), float32 ``[R, R, R]`` in [0, 1];
    each voxel averages ``supersample^3`` sub-samples (anti-aliased edges)."""
    s = supersample
    step = 2.0 / (resolution - 1)
    axis = (np.linspace(-1.0, 1.0, resolution)[:, None] + (np.arange(s) - (s - 1) / 2) * step / s).reshape(-1)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    volume = np.zeros((resolution * s,) * 3, dtype=np.float64)
    for value, (a, b, c), (x0, y0, z0), phi in _ELLIPSOIDS:
        cos, sin = math.cos(math.radians(phi)), math.sin(math.radians(phi))
        u, v = (x - x0) * cos + (y - y0) * sin, -(x - x0) * sin + (y - y0) * cos
        volume[(u / a) ** 2 + (v / b) ** 2 + ((z - z0) / c) ** 2 <= 1.0] += value
    volume = np.clip(volume, 0.0, None).reshape(resolution, s, resolution, s, resolution, s).mean(axis=(1, 3, 5))
    return (volume / volume.max()).astype(np.float32)


def _read_array(path: Path) -> np.ndarray:
    name = path.name.lower()
    try:
        if name.endswith((".nii", ".nii.gz")):
            import nibabel as nib

            return np.asarray(nib.load(str(path)).get_fdata(dtype=np.float32))
        if name.endswith((".tif", ".tiff")):
            import tifffile

            return np.asarray(tifffile.imread(str(path)))
        if name.endswith(".npy"):
            return np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any reader failure is the same user-facing problem
        raise UserError(f"cannot read volume {path}: {exc.__class__.__name__}: {exc}") from exc
    raise UserError(f"volume {path} has an unsupported format; expected .nii, .nii.gz, .tif, .tiff or .npy")


def load_volume(path: Optional[Path], resolution: Optional[int] = None) -> tuple[np.ndarray, str]:
    """The volume in ``path`` (or the generated phantom, ``resolution``^3, default 32) as float32 in ``[0, 1]``.

    A user's volume keeps its own shape unless ``resolution`` asks for ``[R, R, R]``; each change made to it
    (intensity rescaling, outlier clipping, resampling) is printed once.
    """
    from skimage.transform import resize

    if path is None:
        return head_phantom(resolution or DEFAULT_RESOLUTION), DEFAULT_VOLUME_NAME
    path = Path(path)
    if not path.is_file():
        raise UserError(f"volume file not found: {path}")
    raw = _read_array(path)
    shape = raw.shape
    vol = raw.reshape([s for s in shape if s != 1]) if raw.ndim > 3 else raw  # e.g. NIfTI [X, Y, Z, 1]
    if vol.ndim != 3:
        raise UserError(f"volume {path} has {raw.ndim} dimensions {tuple(shape)}; expected a 3D volume")
    if min(vol.shape) < 2:
        raise UserError(f"volume {path} has shape {tuple(shape)}; need at least 2 samples on every axis")
    if not np.issubdtype(vol.dtype, np.number) or np.iscomplexobj(vol):
        raise UserError(f"volume {path} has unsupported voxel type {vol.dtype}; expected real numbers")
    vol = vol.astype(np.float64)
    if not np.all(np.isfinite(vol)):
        raise UserError(f"volume {path} contains NaN or infinite voxels")
    vol = _rescale_intensities(vol, path)
    if resolution is not None and vol.shape != (resolution,) * 3:
        shrinking = any(s > resolution for s in vol.shape)
        console.log(f"volume resampled from {'x'.join(map(str, vol.shape))} to {resolution}^3 (--resolution)")
        vol = np.clip(resize(vol, (resolution,) * 3, order=1, anti_aliasing=shrinking), 0.0, 1.0)
    return vol.astype(np.float32), str(path)


def _rescale_intensities(vol: np.ndarray, path: Path) -> np.ndarray:
    """Min-max to ``[0, 1]``; when a few extreme voxels would squash the rest (the 0.01-99.99 percentile range is
    under 1% of the full range), the intensities are clipped to that percentile range first. Said once."""
    lo, hi = float(vol.min()), float(vol.max())
    if not hi > lo:
        raise UserError(f"volume {path} is constant ({lo:g}): nothing to reconstruct")
    # the voxel values nearest inside each percentile (no interpolation towards an outlier)
    p_lo = float(np.percentile(vol, 0.01, method="higher"))
    p_hi = float(np.percentile(vol, 99.99, method="lower"))
    if p_hi > p_lo and (p_hi - p_lo) < 0.01 * (hi - lo):
        outliers = int(np.count_nonzero((vol < p_lo) | (vol > p_hi)))
        console.log(
            f"volume intensities clipped to [{p_lo:g}, {p_hi:g}] (the 0.01-99.99 percentiles; {outliers} "
            f"outlier voxels reach [{lo:g}, {hi:g}]) and rescaled to [0, 1]"
        )
        return (np.clip(vol, p_lo, p_hi) - p_lo) / (p_hi - p_lo)
    console.log(f"volume intensities rescaled from [{lo:g}, {hi:g}] to [0, 1]")
    return (vol - lo) / (hi - lo)


def check_mri_options(resolution: Optional[int], sampling: float, center: float) -> None:
    """The MRI task's option values (checked by the command before anything runs, and by the task)."""
    if resolution is not None and resolution < 8:
        raise UserError(f"--resolution must be at least 8 voxels per axis, got {resolution}")
    if not 0 < sampling <= 1:
        raise UserError(f"--sampling must be a fraction in (0, 1], got {sampling}")
    if not 0 <= center < 1:
        raise UserError(f"--center must be in [0, 1), got {center}")


def variable_density_mask(
    shape: Union[int, Sequence[int]], sampling: float, center: float = 0.08, seed: int = 0
) -> Tensor:
    """Boolean mask of k-space (``[R, R, R]`` for an int ``shape``) in FFT order (zero frequency at index 0); the
    radius is in fractions of each axis' Nyquist frequency. See the module docstring."""
    check_mri_options(None, sampling, center)
    shape = (shape,) * 3 if isinstance(shape, int) else tuple(shape)
    axes = [torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64) / (n / 2) for n in shape]
    radius = torch.sqrt(sum(k**2 for k in torch.meshgrid(*axes, indexing="ij")))
    core = radius <= center
    core_fraction = core.double().mean().item()
    if core_fraction > sampling:
        raise UserError(
            f"--center {center} alone measures {100 * core_fraction:.1f}% of k-space, more than --sampling "
            f"{sampling} ({100 * sampling:g}%); lower --center or raise --sampling"
        )
    weight = torch.exp(-(radius**2) / (2 * 0.3**2))
    lo, hi = 0.0, 1.0 / float(weight.min())  # at hi every coefficient is measured
    for _ in range(200):  # expected fraction is monotone in the scale
        mid = 0.5 * (lo + hi)
        frac = torch.where(core, torch.ones_like(weight), (mid * weight).clamp(max=1.0)).mean().item()
        lo, hi = (mid, hi) if frac < sampling else (lo, mid)
    prob = torch.where(core, torch.ones_like(weight), (hi * weight).clamp(max=1.0))
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(prob.shape, generator=generator, dtype=torch.float64) < prob


class MRITask(Task):
    """Reconstruct a volume from undersampled k-space: ``[R^3, 3]`` coordinates -> ``[R^3, 1]`` intensity."""

    name = "mri"
    progress_metric = "psnr"
    outputs = ("slices.png",)
    track_best = True
    in_dim = 3
    out_dim = 1

    def __init__(
        self,
        volume: Optional[Path] = None,
        resolution: Optional[int] = None,
        sampling: float = 0.25,
        center: float = 0.08,
        mask_seed: int = 0,
    ) -> None:
        check_mri_options(resolution, sampling, center)
        if resolution is not None or volume is None:
            # coordinates (3 float32), the complex k-space and its mask, target and prediction volumes
            require_memory(
                f"a {resolution or DEFAULT_RESOLUTION}^3 MRI volume", (resolution or DEFAULT_RESOLUTION) ** 3 * 64.0
            )
        vol, self.source = load_volume(volume, resolution)
        self.shape = tuple(int(n) for n in vol.shape)
        if min(self.shape) < 8:
            raise UserError(
                f"volume {self.source} has shape {self.shape}; need at least 8 voxels per axis (or "
                f"resample with --resolution)"
            )
        require_memory(f"a {'x'.join(map(str, self.shape))} MRI volume", float(np.prod(self.shape)) * 64.0)
        self.sampling, self.center, self.mask_seed = sampling, center, mask_seed
        self.target = torch.from_numpy(vol)
        self.mask = variable_density_mask(self.shape, sampling, center, mask_seed)
        self.measurements = self.kspace(self.target)[self.mask]
        self._coords = coordinate_grid(self.shape)

    @property
    def size_label(self) -> str:
        """``32^3`` for a cube, else ``181x217x181``."""
        return f"{self.shape[0]}^3" if len(set(self.shape)) == 1 else "x".join(map(str, self.shape))

    @property
    def measured_fraction(self) -> float:
        return float(self.mask.double().mean())

    @staticmethod
    def kspace(volume: Tensor) -> Tensor:
        """Orthonormal 3D DFT of ``[R, R, R]`` (float32 in, complex64 out)."""
        return torch.fft.fftn(volume.float(), norm="ortho")

    def coords(self) -> Tensor:
        return self._coords

    def volume(self, pred: Tensor) -> Tensor:
        return pred.float().reshape(self.shape)

    def loss(self, pred: Tensor, index: Optional[Tensor] = None) -> Tensor:
        residual = self.kspace(self.volume(pred))[self.mask] - self.measurements
        return torch.mean(residual.real**2 + residual.imag**2)

    def progress(self, pred: Tensor, index: Optional[Tensor] = None) -> float:
        return psnr(self.volume(pred), self.target)

    def zero_filled(self) -> Tensor:
        """Inverse DFT of the measurements with the missing coefficients set to zero (real part)."""
        full = torch.zeros(self.mask.shape, dtype=self.measurements.dtype)
        full[self.mask] = self.measurements
        return torch.fft.ifftn(full, norm="ortho").real

    def kspace_error_split(self, pred: Tensor) -> Dict[str, float]:
        """The volume's squared error split over k-space: by Parseval (orthonormal DFT) the voxel MSE is exactly
        ``measured + unmeasured``, each the sum of ``|F(pred) - F(target)|^2`` over its coefficients divided by
        the voxel count (of the prediction before PSNR's clamp to [0, 1]). A network that fits the measurements but fills the missing coefficients badly shows a
        small ``measured`` and a large ``unmeasured`` part (generalisation, not optimisation)."""
        err = (self.kspace(self.volume(pred)) - self.kspace(self.target)).abs().square().double()
        n = err.numel()
        return {
            "mse_measured_kspace": float(err[self.mask].sum() / n),
            "mse_unmeasured_kspace": float(err[~self.mask].sum() / n),
        }

    def evaluate(self, pred: Tensor) -> Dict[str, float]:
        vol, zf = self.volume(pred), self.zero_filled()
        return {
            "psnr": psnr(vol, self.target),
            "ssim": ssim(vol, self.target),
            "kspace_mse": float(self.loss(pred)),
            **self.kspace_error_split(pred),
            "zero_filled_psnr": psnr(zf, self.target),
            "zero_filled_ssim": ssim(zf, self.target),
            "measured_fraction": self.measured_fraction,
        }

    def describe(self) -> Dict[str, object]:
        return {
            "task": self.name,
            "volume": self.source,
            "shape": list(self.shape),
            "sampling": self.sampling,
            "center": self.center,
            "mask_seed": self.mask_seed,
        }

    def save_outputs(self, pred: Tensor, out_dir: Path) -> Dict[str, Path]:
        from ..plotting import pyplot

        plt = pyplot()

        out_dir = Path(out_dir)
        vol = self.volume(pred).clamp(0.0, 1.0).numpy()
        zf = self.zero_filled().clamp(0.0, 1.0).numpy()
        target = self.target.numpy()
        cuts = {
            f"axis {a}": tuple(slice(n // 2, n // 2 + 1) if i == a else slice(None) for i, n in enumerate(self.shape))
            for a in range(3)
        }
        columns = (
            ("target", target, "gray", 1.0),
            (f"zero-filled ({psnr(torch.from_numpy(zf), self.target):.2f} dB)", zf, "gray", 1.0),
            (f"reconstruction ({psnr(torch.from_numpy(vol), self.target):.2f} dB)", vol, "gray", 1.0),
            ("|error|", np.abs(vol - target), "inferno", 0.25),
        )
        fig, axes = plt.subplots(3, 4, figsize=(12, 9))
        for row, (cut_name, cut) in enumerate(cuts.items()):
            for col, (title, data, cmap, vmax) in enumerate(columns):
                ax = axes[row, col]
                ax.imshow(np.squeeze(data[cut]).T, cmap=cmap, vmin=0.0, vmax=vmax, origin="lower")
                ax.set_xticks([])
                ax.set_yticks([])
                if row == 0:
                    ax.set_title(title, fontsize=10)
                if col == 0:
                    ax.set_ylabel(f"middle slice, {cut_name}")
        fig.suptitle(f"MRI: {self.source}, {self.size_label}, {100 * self.measured_fraction:.1f}% of k-space")
        fig.tight_layout()
        path = out_dir / "slices.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return {"slices": path}


# the `nerf-norm mri` command


@dataclass
class MRICommand(FitCommand):
    """Reconstruct an MRI volume from undersampled 3D k-space (paper section 5.4): loss on measured coefficients.

    Measurements: a variable-density random mask (fully sampled centre) over the orthonormal 3D DFT, keeping
    SAMPLING of the coefficients. Writes OUT/slices.png (middle slices: target, zero-filled inverse FFT,
    reconstruction, error), OUT/curve.png, OUT/metrics.json (PSNR, SSIM; zero-filled for context) and
    OUT/checkpoint.pt.
    """

    volume: Optional[Path] = None
    """volume (.nii/.nii.gz, .tif stack, .npy); default: a generated 3D head phantom"""
    resolution: Optional[int] = None
    """resample to this many voxels per axis (paper: 96); default: a given volume's own shape, the generated
    phantom at 32^3"""
    sampling: float = 0.25
    """fraction of k-space measured"""
    center: float = 0.08
    """radius (fraction of Nyquist) of the fully measured k-space centre"""
    mask_seed: int = 0
    """seed of the random k-space mask"""
    arch: str = "2x256"
    """hidden layers x hidden features (paper: 2x256, 4x256)"""
    out: Path = Path("outputs/mri")
    """output directory"""
    iters: int = 300
    """training iterations, full batch (paper: 1000; 300 is the CPU default)"""
    lr: Optional[float] = 2e-3
    """initial Adam learning rate (paper: 2e-3 for every method)"""

    def validate(self) -> None:
        super().validate()
        check_mri_options(self.resolution, self.sampling, self.center)


def run_mri(cmd: MRICommand):
    return run_fit(cmd, lambda: MRITask(cmd.volume, cmd.resolution, cmd.sampling, cmd.center, cmd.mask_seed))
