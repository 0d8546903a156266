"""The ``TrainerConfig`` of our nerfstudio methods: nerfstudio's own, checked as soon as it is built.

``ns-train`` builds the configuration from the command line (tyro), writes ``config.yml`` and only then builds
the trainer, the model and the optimizers, where a bad value surfaces as a traceback from deep inside (torch's
``Invalid learning rate: nan`` after the model was built). :class:`CheckedTrainerConfig` checks the values that
reach our methods in ``__post_init__``, i.e. while the command line is parsed, before anything is built or
written, and reports the first bad one as one line naming the option.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, is_dataclass

from nerfstudio.engine.trainer import TrainerConfig

from ..errors import UserError

__all__ = ["CheckedTrainerConfig", "check_trainer_config"]

# counts that must be at least 1, wherever they appear in the pipeline's configs (nerfstudio's names)
_POSITIVE_COUNTS = (
    "train_num_rays_per_batch",
    "eval_num_rays_per_batch",
    "eval_num_rays_per_chunk",
    "num_coarse_samples",
    "num_importance_samples",
    "num_samples",
    "num_samples_importance",
    "num_layers",
    "hidden_dim",
    "geo_feat_dim",
    "num_layers_color",
    "hidden_dim_color",
    "spectral_bands",
)
# numbers that must be finite and positive
_POSITIVE_NUMBERS = ("camera_res_scale_factor", "norm_eps", "eps")


def _option(path: str) -> str:
    return "--" + path.replace("_", "-")


def _check_values(config, path: str) -> None:
    """Recursively checks the dataclass ``config`` (reached at ``path``) and its nested configs."""
    for f in fields(config):
        if f.name.startswith("_"):
            continue
        value = getattr(config, f.name)
        where = f"{path}.{f.name}" if path else f.name
        if is_dataclass(value) and not isinstance(value, type):
            _check_values(value, where)
        elif isinstance(value, bool):
            continue
        elif f.name in _POSITIVE_COUNTS and isinstance(value, int) and value < 1:
            raise UserError(f"{_option(where)} must be at least 1, got {value}")
        elif f.name in _POSITIVE_NUMBERS and isinstance(value, (int, float)):
            if not (math.isfinite(value) and value > 0):
                raise UserError(f"{_option(where)} must be a positive finite number, got {value}")
        elif f.name == "norm_momentum" and isinstance(value, (int, float)) and not 0 < value <= 1:
            raise UserError(f"{_option(where)} must be in (0, 1], got {value}")


def check_trainer_config(config: TrainerConfig) -> None:
    """Raises :class:`UserError` for the first value of ``config`` our methods cannot train with: a learning
    rate that is not a positive finite number, a ray or sample count below 1, an iteration or step count below 1,
    a norm momentum outside (0, 1]."""
    for name in ("max_num_iterations", "steps_per_save"):
        if getattr(config, name) < 1:
            raise UserError(f"{_option(name)} must be at least 1, got {getattr(config, name)}")
    for group, settings in (config.optimizers or {}).items():
        optimizer = settings.get("optimizer") if isinstance(settings, dict) else None
        lr = getattr(optimizer, "lr", None)
        if lr is not None and not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise UserError(f"--optimizers.{group}.optimizer.lr must be a positive finite number, got {lr}")
        scheduler = settings.get("scheduler") if isinstance(settings, dict) else None
        lr_final = getattr(scheduler, "lr_final", None)
        if lr_final is not None and not (math.isfinite(lr_final) and lr_final > 0):
            raise UserError(f"--optimizers.{group}.scheduler.lr-final must be a positive finite number, got {lr_final}")
    _check_values(config.pipeline, "pipeline")


@dataclass
class CheckedTrainerConfig(TrainerConfig):
    """nerfstudio's ``TrainerConfig``, its values checked when it is built (:func:`check_trainer_config`)."""

    def __post_init__(self) -> None:
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()
        check_trainer_config(self)
