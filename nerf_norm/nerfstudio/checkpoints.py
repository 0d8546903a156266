"""nerfstudio checkpoints: ones that torch >= 2.6 can read back, and no field silently left unloaded.

nerfstudio 1.1.x's learning-rate schedulers compute with numpy (``CosineDecayScheduler``, NeuS' schedule, returns
``numpy.float64`` once the warm-up is over), so every checkpoint written after the warm-up holds numpy scalars in
its optimizer and scheduler states. nerfstudio reads checkpoints with ``torch.load``'s default, which since torch
2.6 is ``weights_only=True`` and refuses them ("Unsupported global: GLOBAL numpy.core.multiarray.scalar"): a neus-cn
run could then not be resumed (``--load-dir``), viewed (``ns-viewer``), evaluated (``ns-eval``) or meshed
(``nerf-norm extract-mesh``). :func:`allow_numpy_scalars` adds exactly what those states need (numpy's scalar
constructor and the dtypes of its float and integer scalars) to torch's weights-only allowlist; everything else
stays refused. Our models call it when they are built (:func:`prepare_checkpoints`), which every nerfstudio entry
point does before it loads a checkpoint of our methods (``ns-train --load-dir``, ``ns-viewer``, ``ns-eval``,
``ns-render``, ``ns-export``); importing nerf_norm changes nothing.

nerfstudio's pipeline retries a model load that fails in strict mode with ``strict=False``: a checkpoint whose
field does not match the model (another layout, norm or width) would then leave the field at its initialisation
without a word, and a mesh extracted from it is garbage. :func:`refuse_partial_loads` makes that an error naming
the keys.
"""

from __future__ import annotations

from typing import List

import torch
from torch import nn

from ..errors import UserError


def numpy_scalar_globals() -> list:
    """The numpy objects a pickled ``numpy.float64`` (or int/bool scalar) refers to."""
    import numpy as np

    try:  # numpy >= 2
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import scalar
    dtypes = {type(np.dtype(t)) for t in (np.float64, np.float32, np.float16, np.int64, np.int32, np.bool_)}
    return [scalar, np.dtype, *sorted(dtypes, key=lambda t: t.__name__)]


def allow_numpy_scalars() -> None:
    """Lets ``torch.load(weights_only=True)`` rebuild numpy scalars (no-op before torch 2.4, whose default is
    ``weights_only=False``)."""
    add = getattr(torch.serialization, "add_safe_globals", None)
    if add is not None:
        add(numpy_scalar_globals())


class CheckpointMismatch(UserError, RuntimeError):
    """A checkpoint whose keys do not match the model's (raised even by non-strict loads); a user error, so
    ``ns-train --load-dir`` and our commands report it as one line."""


def refuse_partial_loads(model: nn.Module, prefix: str) -> None:
    """Registers a post-load hook on ``model``: a ``load_state_dict`` (strict or not) that leaves a key under
    ``prefix`` (e.g. ``"field."``) missing or unused raises :class:`CheckpointMismatch`."""

    def check(module: nn.Module, incompatible) -> None:
        missing: List[str] = [k for k in incompatible.missing_keys if k.startswith(prefix)]
        unexpected: List[str] = [k for k in incompatible.unexpected_keys if k.startswith(prefix)]
        if missing or unexpected:

            def show(keys: List[str]) -> str:
                return ", ".join(keys[:4]) + (f" and {len(keys) - 4} more" if len(keys) > 4 else "") or "none"

            raise CheckpointMismatch(
                f"the checkpoint does not match this {type(module).__name__}'s {prefix.rstrip('.')}: missing "
                f"{show(missing)}; not used {show(unexpected)}. It was written with other model options (norm, "
                "widths, norm placement) than the config being loaded, so the load is refused rather than "
                "continued with a partly untrained field."
            )

    model.register_load_state_dict_post_hook(check)


def prepare_checkpoints(model: nn.Module, prefix: str = "field.") -> None:
    """What our models do about checkpoints when they are built: torch may read nerfstudio's numpy scalars
    (:func:`allow_numpy_scalars`) and a load that leaves ``prefix`` partly unloaded is refused
    (:func:`refuse_partial_loads`)."""
    allow_numpy_scalars()
    refuse_partial_loads(model, prefix)
