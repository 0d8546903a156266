"""What every fitting command (`nerf-norm image | occupancy | ct | mri`) shares: one config base, one runner.

Each command is a :class:`FitCommand` (the trainer's settings plus method, architecture and output folder) with
its task's data options, defined beside its task (``tasks/image.py``: ``ImageCommand`` and ``run_image``, ...);
:func:`run_fit` builds the task, the network from the 13-method registry and the
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

__all__ = ["FitCommand", "run_fit", "fit_network"]


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
