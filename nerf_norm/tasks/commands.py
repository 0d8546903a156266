"""The fitting commands (`nerf-norm image | occupancy | ct | mri`): one config base, one runner, one trainer.

Each command is a :class:`FitCommand` (the trainer's settings plus method, architecture and output folder) with
its task's data options; :func:`run_fit` builds the task, the network from the 13-method registry and the
:class:`~nerf_norm.tasks.base.Trainer`, and returns the fit and the task.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Optional, Tuple

from torch import nn

from ..errors import UserError
from ..networks import EncodingSpec, build_network, get_method, parse_arch
from ..norms import CN_VARIANTS
from .base import FitResult, Task, TrainConfig, Trainer

__all__ = [
    "FitCommand",
    "ImageCommand",
    "OccupancyCommand",
    "CTCommand",
    "MRICommand",
    "run_fit",
    "run_image",
    "run_occupancy",
    "run_ct",
    "run_mri",
    "fit_network",
]


@dataclass
class FitCommand(TrainConfig):
    """Settings every fitting command shares."""

    method: str = "pe+cn"
    """one of: siren, mfn, wire, relu, relu+bn, relu+ln, relu+gn, relu+cn, pe, pe+bn, pe+ln, pe+gn, pe+cn"""
    arch: str = "10x28"
    """hidden layers x hidden features, e.g. 2x256"""
    out: Path = Path("outputs/fit")
    """output directory"""
    cn_variant: Literal["paper", "reference"] = "paper"
    """CrossNorm formulation (see README: 'Which CrossNorm')"""
    encoding: Literal["positional", "gaussian"] = "positional"
    """input encoding of the pe family: 'positional' is the paper's PE (NeRF's, --pe-frequencies octaves, input
    kept); 'gaussian' is Tancik et al.'s random Fourier features (a different method, labelled as such)"""
    pe_frequencies: int = 10
    """octaves of the positional encoding, frequencies 2^k pi for k < L (paper: 10)"""
    gaussian_scale: float = 10.0
    """scale of the Gaussian Fourier features (unit-interval convention), with --encoding gaussian"""
    gaussian_features: Optional[int] = None
    """number of Gaussian Fourier features, with --encoding gaussian (default: the hidden width)"""

    def validate(self) -> None:
        super().validate()
        try:
            get_method(self.method)
            parse_arch(self.arch)
        except ValueError as exc:
            raise UserError(str(exc)) from exc
        if self.out.exists() and not self.out.is_dir():
            raise UserError(f"--out {self.out} is a file; it must name a directory (made if missing)")
        if self.cn_variant not in CN_VARIANTS:
            raise UserError(f"--cn-variant must be one of {CN_VARIANTS}, got {self.cn_variant!r}")
        self.encoding_spec()

    def encoding_spec(self) -> EncodingSpec:
        try:
            return EncodingSpec(self.encoding, self.pe_frequencies, self.gaussian_scale, self.gaussian_features)
        except ValueError as exc:
            raise UserError(f"--encoding / --pe-frequencies / --gaussian-*: {exc}") from exc


def _train_config(cmd: TrainConfig) -> TrainConfig:
    return TrainConfig(**{f: getattr(cmd, f) for f in TrainConfig.__dataclass_fields__})


def run_fit(cmd: FitCommand, make_task: Callable[[], Task]) -> Tuple[FitResult, Task]:
    """Validates ``cmd``, builds the task and the network, trains, and returns ``(fit, task)``."""
    cmd.validate()
    task = make_task()
    spec = get_method(cmd.method)
    encoding = cmd.encoding_spec()
    info = {"method": spec.name, "arch": cmd.arch, "cn_variant": cmd.cn_variant}
    if spec.family == "pe":
        info.update(encoding.describe())
        if encoding.kind == "gaussian":  # a different method from the paper's PE: never labelled pe
            info["method"] = "gff" + spec.name[len("pe") :]
    trainer = Trainer(_train_config(cmd), cmd.out, info)
    return trainer.fit(task, lambda: fit_network(cmd, task), spec.default_lr), task


def fit_network(cmd: FitCommand, task: Task) -> nn.Module:
    """The network ``cmd`` fits to ``task`` (freshly initialised with ``cmd.seed``): the method, architecture and
    encoding of ``cmd``; norms with running statistics when the task trains on batches (``Task.eval_chunk``)."""
    spec = get_method(cmd.method)
    norm_kwargs = {"variant": cmd.cn_variant} if spec.norm == "cn" else {}
    if task.trains_on_batches():
        norm_kwargs["track_running_stats"] = True
    return build_network(
        spec.name,
        task.in_dim,
        task.out_dim,
        cmd.arch,
        encoding=cmd.encoding_spec(),
        seed=cmd.seed,
        norm_kwargs=norm_kwargs or None,
    )


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


def run_image(cmd: ImageCommand):
    """Runs the image task for ``cmd``; returns the fit and the task (its source and size)."""
    from .image import ImageTask

    downscale = cmd.downscale if cmd.downscale is not None else (1 if cmd.image is not None else 4)
    return run_fit(cmd, lambda: ImageTask(cmd.image, downscale))


@dataclass
class OccupancyCommand(FitCommand):
    """Fit a mesh's occupancy (paper section 5.2): BCE on random grid points, Adam 5e-3 -> 5e-4 (cosine).

    The mesh is scaled into [-1, 1]^3 and voxelized on a RESOLUTION^3 grid (inside = 1: generalized winding
    number > 1/2, which also fills the holes of a mesh that is not closed, with a warning). Writes OUT/mesh.ply (marching cubes of the fitted
    occupancy at 0.5 on the grid), OUT/mesh.png and OUT/target.png (renderings), OUT/curve.png,
    OUT/metrics.json (IoU on the grid) and OUT/checkpoint.pt (resumable).
    """

    mesh: Optional[Path] = None
    """mesh file (OBJ, PLY, STL, ...); default: pymeshlab's sample bunny; real: ../shared/data/meshes/*"""
    arch: str = "2x256"
    """hidden layers x hidden features (paper: 2x256)"""
    resolution: int = 128
    """grid samples per axis for voxelization, IoU and marching cubes (paper: 512; 128 is the CPU default)"""
    batch: int = 100_000
    """random grid points per training step (paper: 100,000)"""
    out: Path = Path("outputs/occupancy")
    """output directory"""
    iters: int = 200
    """training steps (paper: 200 epochs of a 512^3 grid; 200 steps is the CPU default)"""
    lr: Optional[float] = 5e-3
    """initial Adam learning rate (paper: 5e-3 for every method)"""


def run_occupancy(cmd: OccupancyCommand):
    from .occupancy import OccupancyTask

    return run_fit(cmd, lambda: OccupancyTask(cmd.mesh, cmd.resolution, cmd.batch))


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


def run_ct(cmd: CTCommand):
    from .ct import CTTask

    return run_fit(cmd, lambda: CTTask(cmd.image, cmd.projections, cmd.size))


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


def run_mri(cmd: MRICommand):
    from .mri import MRITask

    return run_fit(cmd, lambda: MRITask(cmd.volume, cmd.resolution, cmd.sampling, cmd.center, cmd.mask_seed))
