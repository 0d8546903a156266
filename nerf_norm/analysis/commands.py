"""``nerf-norm ntk`` and ``nerf-norm spectral-dynamics``: the analysis as commands with figures and JSON."""

from __future__ import annotations

import json
import platform
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Literal, Optional, Tuple

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from ..encodings import PositionalEncoding
from ..errors import UserError, require_memory
from ..networks import CoordinateMLP, Finer, Gauss, get_method, parse_arch
from ..norms import NORM_NAMES
from ..outputs import atomic_write, check_output_dir, prepare_output_dir, write_text
from ..provenance import provenance
from .figures import NORM_LABELS, plot_ntk_histograms, plot_spectral_dynamics, stats_table
from .ntk import empirical_ntk, ntk_eigenvalues, ntk_statistics
from .spectral import SignalTask, band_edges, default_bands, periodic_grid, spectral_dynamics, tones_signal

console = Console()

_ENCODING = re.compile(r"^(relu|finer|gauss|pe(\d+))$")


def _split(value: str, option: str) -> List[str]:
    items = [v.strip().lower() for v in value.split(",") if v.strip()]
    if not items:
        raise UserError(f"{option} needs at least one comma-separated name")
    return items


def _machine() -> str:
    return f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


@dataclass
class NTKCommand:
    """Empirical NTK eigenvalues of coordinate MLPs on a 1D input grid, per norm and encoding (paper Fig. 1a).

    Writes OUT/ntk_eigenvalues.png (histograms of log10 eigenvalues, one row per encoding), OUT/ntk.json
    (the statistics of paper Eq. 6 and of the eigenvalues, plus the settings) and OUT/ntk.md (a table).
    """

    norms: str = "none,bn,ln,gn,cn"
    """comma-separated norms: none, bn, ln, gn, cn"""
    encodings: str = "relu,pe1,pe5"
    """comma-separated networks: relu (ReLU MLP on the raw coordinate), peL (on NeRF's positional encoding with L
    frequencies), finer or gauss (FINER's or the Gaussian activation in place of ReLU, norms before every
    activation after the first; docs: Later baselines)"""
    arch: str = "4x128"
    """hidden layers x hidden features of the MLP"""
    samples: int = 256
    """T: points of the periodic grid on [-1, 1) (the NTK is T x T)"""
    seed: int = 0
    """seed of the network initialisation (the same for every norm)"""
    chunk_size: int = 64
    """Jacobian rows computed at once (memory bound)"""
    out: Path = Path("outputs/ntk")
    """output directory"""
    overwrite: bool = False
    """replace the outputs of another run (other settings, or another command) in --out"""

    def parsed(self) -> Tuple[List[str], List[Tuple[str, int]]]:
        norms = _split(self.norms, "--norms")
        for n in norms:
            if n not in NORM_NAMES:
                raise UserError(f"--norms: unknown norm {n!r}; expected some of {', '.join(NORM_NAMES)}")
        encodings = []
        for e in _split(self.encodings, "--encodings"):
            m = _ENCODING.match(e)
            if not m:
                raise UserError(
                    f"--encodings: unknown network {e!r}; expected relu, finer, gauss or peL (e.g. pe1, pe5)"
                )
            encodings.append((e, int(m.group(2) or 0)))
        try:
            parse_arch(self.arch)
        except ValueError as exc:
            raise UserError(str(exc)) from exc
        if self.samples < 2:
            raise UserError(f"--samples must be at least 2 (batch statistics), got {self.samples}")
        if self.chunk_size < 1:
            raise UserError(f"--chunk-size must be positive, got {self.chunk_size}")
        # the float64 T x T kernel, a copy for the eigensolver and its workspace
        require_memory(f"the empirical NTK of --samples {self.samples} points", 3 * 8.0 * self.samples**2)
        return norms, encodings


def _encoding_title(name: str, frequencies: int) -> str:
    if name in ("finer", "gauss"):
        return {"finer": "FINER", "gauss": "Gaussian activation"}[name] + " on the raw coordinate"
    if frequencies == 0:
        return "ReLU MLP on the raw coordinate"
    return f"positional encoding, {frequencies} frequenc{'y' if frequencies == 1 else 'ies'}"


def build_ntk_network(norm: str, frequencies: int, arch: str, seed: int, network: str = "relu") -> nn.Module:
    """The MLP of ``nerf-norm ntk``: 1D input, one output; a ReLU MLP with an optional NeRF positional encoding
    (``network`` ``relu`` / ``peL``), or FINER / Gauss (``finer`` / ``gauss``) with ``norm``."""
    layers, features = parse_arch(arch)
    torch.manual_seed(seed)
    if network == "finer":
        return Finer(1, 1, layers, features, norm=norm)
    if network == "gauss":
        return Gauss(1, 1, layers, features, norm=norm)
    encoding = PositionalEncoding(1, frequencies) if frequencies else None
    return CoordinateMLP(1, 1, layers, features, norm, encoding)


#: the files ``nerf-norm ntk`` writes into --out
NTK_OUTPUTS = ("ntk_eigenvalues.png", "ntk.json", "ntk_eigenvalues.npz", "ntk.md")
SPECTRAL_OUTPUTS = ("spectral_dynamics.png", "spectral_dynamics.json")


def _settings(cmd) -> Dict[str, object]:
    """What identifies a run of an analysis command (its options but --out and --overwrite)."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cmd).items() if k not in ("out", "overwrite")}


def run_ntk(cmd: NTKCommand) -> Dict[str, object]:
    norms, encodings = cmd.parsed()
    prepare_output_dir(cmd.out, NTK_OUTPUTS, cmd.overwrite, command="nerf-norm ntk", run=_settings(cmd))
    coords = periodic_grid([cmd.samples])
    eigen: Dict[str, Dict[str, np.ndarray]] = {}
    stats: Dict[str, Dict[str, Dict[str, float]]] = {}
    start = time.perf_counter()
    from rich.progress import Progress

    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task("NTK", total=len(norms) * len(encodings))
        for enc, freqs in encodings:
            eigen[enc], stats[enc] = {}, {}
            for norm in norms:
                progress.update(bar, description=f"NTK {enc} {norm}")
                model = build_ntk_network(norm, freqs, cmd.arch, cmd.seed, network=enc)
                kernel = empirical_ntk(model, coords, chunk_size=cmd.chunk_size)
                lam = ntk_eigenvalues(kernel)
                eigen[enc][norm] = lam.numpy()
                stats[enc][norm] = ntk_statistics(kernel, lam).as_dict()
                progress.advance(bar)
    seconds = time.perf_counter() - start
    titles = {enc: _encoding_title(enc, f) for enc, f in encodings}
    figure = plot_ntk_histograms(eigen, titles, cmd.out / "ntk_eigenvalues.png")
    record = {
        "provenance": provenance(_settings(cmd), program="nerf-norm"),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cmd).items()},
        "machine": _machine(),
        "seconds": seconds,
        "statistics": stats,
    }
    write_text(cmd.out / "ntk.json", json.dumps(record, indent=2))
    with atomic_write(cmd.out / "ntk_eigenvalues.npz") as tmp:
        np.savez_compressed(tmp, **{f"{enc}_{norm}": v for enc, per in eigen.items() for norm, v in per.items()})
    keys = [
        "trace_mean",
        "trace_variance",
        "relative_variance",
        "max",
        "max_lower_bound",
        "max_upper_bound",
        "max_over_mean",
        "median",
        "max_over_median",
        "log10_mean",
    ]
    md = (
        f"# Empirical NTK eigenvalues ({cmd.arch} MLP, T = {cmd.samples} points on [-1, 1), seed {cmd.seed})\n\n"
        f"Command: `nerf-norm ntk --norms {cmd.norms} --encodings {cmd.encodings} --arch {cmd.arch} "
        f"--samples {cmd.samples} --seed {cmd.seed}`; {_machine()}; {seconds:.0f} s.\n\n"
        "trace_mean, trace_variance and the bounds on the largest eigenvalue are the paper's Eq. 6 "
        "(m = tr K / n, v = tr(K K^T) / n - m^2, s/m <= max <= sqrt(n s)); the rest come from the eigenvalues. "
        "relative_variance = v / m^2 and max_over_mean = max / m do not depend on the kernel's overall scale; "
        "log10_mean is the mean of log10 over the positive eigenvalues.\n\n" + stats_table(stats, keys) + "\n"
    )
    write_text(cmd.out / "ntk.md", md)
    table = Table(title=f"NTK eigenvalues ({cmd.arch}, T={cmd.samples})")
    for col in ("encoding", "norm", "mean", "median", "max", "max/median"):
        table.add_column(col)
    for enc, per in stats.items():
        for norm, s in per.items():
            table.add_row(
                enc,
                NORM_LABELS.get(norm, norm),
                f"{s['mean']:.3g}",
                f"{s['median']:.3g}",
                f"{s['max']:.3g}",
                f"{s['max_over_median']:.3g}",
            )
    console.print(table)
    console.print(f"figure [bold]{figure}[/bold], statistics {cmd.out / 'ntk.json'} ({seconds:.0f} s)")
    return record


@dataclass
class SpectralDynamicsCommand:
    """Relative training error per frequency band over iterations, one heatmap per method (paper Fig. 3).

    Each method is trained full batch by the shared trainer (outputs and a resumable checkpoint in
    OUT/METHOD/); writes OUT/spectral_dynamics.png and OUT/spectral_dynamics.json.
    """

    methods: str = "relu,relu+cn,pe,pe+cn"
    """comma-separated registry methods (relu, relu+bn, ..., pe+cn, siren, mfn, wire, finer, gauss, hash, ...)"""
    signal: Literal["tones", "image"] = "tones"
    """tones: 1D sum of unit sines, one at the centre of each band; image: a grayscale image (2D, radial bands)"""
    image: Optional[Path] = None
    """image for --signal image (default: scikit-image's camera)"""
    samples: int = 256
    """tones: points of the 1D grid; image: side of the square image it is resized to"""
    bands: int = 8
    """number of frequency bands"""
    arch: str = "4x128"
    """hidden layers x hidden features"""
    iters: int = 1000
    """training iterations (full batch)"""
    every: int = 10
    """iterations between band-error records"""
    lr: Optional[float] = None
    """learning rate for every method (default: the paper's, 1e-2 with a norm and 2e-4 without)"""
    seed: int = 0
    """seed of the network initialisation"""
    out: Path = Path("outputs/spectral_dynamics")
    """output directory"""
    overwrite: bool = False
    """replace the outputs of another run (other settings, or another command) in --out: everything a nerf_norm
    command wrote there is removed first, the METHOD/ folders of other methods included"""

    def validate(self) -> List[str]:
        methods = _split(self.methods, "--methods")
        try:
            for m in methods:
                get_method(m)
            parse_arch(self.arch)
        except ValueError as exc:
            raise UserError(str(exc)) from exc
        if self.bands < 1:
            raise UserError(f"--bands must be at least 1, got {self.bands}")
        if self.iters < 1 or self.every < 1:
            raise UserError("--iters and --every must be positive")
        if self.signal == "tones" and self.samples < 8 * self.bands:
            raise UserError(
                f"--samples {self.samples} is too few for {self.bands} bands of tones; need at least {8 * self.bands}"
            )
        if self.image is not None and self.signal != "image":
            raise UserError("--image is used with --signal image only")
        if self.signal == "image" and self.samples < 16:
            raise UserError(f"--samples (image side) must be at least 16, got {self.samples}")
        return methods


def build_signal_task(cmd: SpectralDynamicsCommand) -> SignalTask:
    if cmd.signal == "tones":
        edges, centres = default_bands(cmd.samples, cmd.bands)
        target = tones_signal(cmd.samples, centres, seed=cmd.seed)
        desc = f"{cmd.bands} unit sines at {', '.join(f'{c:g}' for c in centres)} cycles"
        return SignalTask(target, (cmd.samples,), edges, desc)
    from skimage.transform import resize

    from ..tasks.image import load_image

    if cmd.image is not None:
        img, source = load_image(cmd.image)
    else:
        from skimage import data

        img, source = data.camera().astype(np.float32)[..., None] / 255.0, "camera (scikit-image)"
    gray = img.mean(axis=-1)
    gray = resize(gray, (cmd.samples, cmd.samples), anti_aliasing=True).astype(np.float32)
    target = torch.from_numpy(gray).reshape(-1, 1)
    edges = band_edges((cmd.samples, cmd.samples), cmd.bands)
    return SignalTask(target, (cmd.samples, cmd.samples), edges, f"{source} at {cmd.samples}x{cmd.samples}")


def run_spectral_dynamics(cmd: SpectralDynamicsCommand) -> Dict[str, object]:
    methods = cmd.validate()
    check_output_dir(cmd.out)
    task = build_signal_task(cmd)
    prepare_output_dir(
        cmd.out, (*SPECTRAL_OUTPUTS, *methods), cmd.overwrite, command="nerf-norm spectral-dynamics", run=_settings(cmd)
    )
    runs = []
    start = time.perf_counter()
    for method in methods:
        console.log(f"training {method} ({cmd.arch}, {cmd.iters} iterations)")
        runs.append(
            spectral_dynamics(
                method,
                task,
                cmd.arch,
                cmd.iters,
                cmd.every,
                cmd.out / method,
                seed=cmd.seed,
                lr=cmd.lr,
                quiet=False,
                overwrite=cmd.overwrite,
            )
        )
    seconds = time.perf_counter() - start
    figure = plot_spectral_dynamics(
        runs, cmd.out / "spectral_dynamics.png", f"{task.description}; {cmd.arch}, lr {cmd.lr or 'paper default'}"
    )
    record = {
        "provenance": provenance(_settings(cmd), program="nerf-norm"),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cmd).items()},
        "signal": task.description,
        "machine": _machine(),
        "seconds": seconds,
        "runs": [r.as_dict() for r in runs],
    }
    write_text(cmd.out / "spectral_dynamics.json", json.dumps(record, indent=2))
    table = Table(title="relative error per band at the end (low -> high frequency)")
    table.add_column("method")
    table.add_column("PSNR")
    table.add_column("band errors")
    for r in runs:
        table.add_row(r.method, f"{r.metrics['psnr']:.2f}", " ".join(f"{e:.2f}" for e in r.errors[-1]))
    console.print(table)
    console.print(f"figure [bold]{figure}[/bold], data {cmd.out / 'spectral_dynamics.json'} ({seconds:.0f} s)")
    return record
