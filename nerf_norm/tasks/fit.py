"""What every fitting command (`nerf-norm image | occupancy | ct | mri`) shares: one config base, one runner.

Each command is a :class:`FitCommand` (the trainer's settings plus method, architecture and output folder) with
its task's data options, defined beside its task (``tasks/image.py``: ``ImageCommand`` and ``run_image``, ...);
:func:`run_fit` builds the task, the network from the method registry and the
:class:`~nerf_norm.tasks.base.Trainer`, and returns the fit and the task.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Optional, Tuple

import torch
from torch import nn

from ..errors import UserError, require_memory
from ..networks import EncodingSpec, build_network, count_parameters, get_method, parse_arch
from ..norms import CN_VARIANTS
from ..outputs import check_output_dir
from .base import FitResult, Task, TrainConfig, Trainer, console

__all__ = ["FitCommand", "run_fit", "fit_network"]


@dataclass
class FitCommand(TrainConfig):
    """Settings every fitting command shares."""

    method: str = "pe+cn"
    """one of the paper's siren, mfn, wire, relu, relu+bn, relu+ln, relu+gn, relu+cn, pe, pe+bn, pe+ln, pe+gn, pe+cn,
    or the later finer, finer+cn, gauss, gauss+cn, hash, hash+bn, hash+ln, hash+gn, hash+cn"""
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
        check_output_dir(self.out)
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
    try:
        params, need = training_memory(cmd, task)
    except ValueError as exc:  # a method that cannot be built at this size: the hash grid's parameter budget
        raise UserError(f"--method {spec.name} --arch {cmd.arch}: {exc}") from exc
    console.log(f"{spec.name} {cmd.arch}: {params:,} parameters, about {need / 2**30:,.1f} GiB of memory to train")
    require_memory(
        f"training {spec.name} {cmd.arch} ({params:,} parameters) on {task.train_batch():,} coordinates at once",
        need,
        "lower it with a smaller --arch, or fewer coordinates (e.g. --downscale, --resolution, --size, --batch)",
    )
    trainer = Trainer(_train_config(cmd), cmd.out, info)
    return trainer.fit(task, lambda: fit_network(cmd, task), spec.default_lr), task


#: float32 values a hidden layer keeps per coordinate and feature during a training step: what the backward pass
#: saves (the linear layer's output, the norm's, the activation's) and the gradients it makes on the way back.
#: Measured peak (RSS above the interpreter's) of relu / relu+cn / pe+cn 4x512 on 256x256 pixels: 0.84 / 1.24 /
#: 1.29 GiB, against this estimate's 2.1 GiB: generous, never short
ACTIVATION_COPIES = 4


def training_memory(cmd: FitCommand, task: Task) -> Tuple[int, float]:
    """``(parameters, bytes)`` a fit of ``cmd`` on ``task`` needs, estimated before anything is allocated (the
    network is built on the meta device): the parameters with their gradients and Adam's two moments, the
    activations of one training batch (:data:`ACTIVATION_COPIES` per hidden feature) and of one evaluation
    chunk (forward only, two layers' outputs alive at a time)."""
    with torch.device("meta"):
        params = count_parameters(fit_network(cmd, task))
    layers, features = parse_arch(cmd.arch)
    width = layers * features
    evaluated = min(task.eval_chunk or len(task.coords()), len(task.coords()))
    activations = 4.0 * (ACTIVATION_COPIES * width * task.train_batch() + 2 * features * evaluated)
    return params, 16.0 * params + activations


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
