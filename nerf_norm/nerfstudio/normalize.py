"""Normalization for nerfstudio fields: :func:`normalize_mlps` puts a norm before every activation of the nerfstudio
``MLP`` s of any field or model, and :func:`stat_set_view` gives a field whose normalized MLPs use another set of
running statistics, for a model that queries one field for several kinds of samples (Mip-NeRF's coarse and fine
passes) and names the set at each call."""

from __future__ import annotations

import copy
from typing import Iterable, List, Optional

from nerfstudio.field_components.mlp import MLP, MLPWithHashEncoding
from torch import Tensor, nn

from ..norms import NormName
from .mlp import NormalizedMLP

__all__ = ["normalize_mlps", "stat_set_view", "StatSetBinding"]


def normalize_mlps(
    module: nn.Module,
    norm: NormName = "cn",
    *,
    names: Optional[Iterable[str]] = None,
    num_stat_sets: int = 1,
    norm_kwargs: Optional[dict] = None,
) -> List[str]:
    """Replaces each nerfstudio ``MLP`` under ``module`` (all, or those whose qualified name is in ``names``) by a
    :class:`NormalizedMLP` of the same layout (fresh weights, torch implementation) and returns the names replaced.

    A tinycudann fused MLP has no place for a norm: it is refused with a message saying to build the field with
    ``implementation="torch"``."""
    wanted = None if names is None else set(names)
    replaced = []
    for name, child in list(module.named_modules()):
        if isinstance(child, MLPWithHashEncoding) and not isinstance(child.model, nn.Sequential):
            raise ValueError(
                f"normalize_mlps: {name or type(module).__name__} is a tinycudann hash grid fused with its MLP, "
                "which has no place for a norm; build the field with implementation='torch'"
            )
        if not isinstance(child, MLP) or isinstance(child, NormalizedMLP) or (wanted and name not in wanted):
            continue
        if child.tcnn_encoding is not None:
            raise ValueError(
                f"normalize_mlps: {name or type(module).__name__} is a tinycudann fused MLP, which has no "
                "place for a norm; build the field with implementation='torch'"
            )
        parent_name, _, leaf = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(
            parent, leaf, NormalizedMLP.like(child, norm=norm, num_stat_sets=num_stat_sets, norm_kwargs=norm_kwargs)
        )
        replaced.append(name)
    if wanted is not None and wanted - set(replaced):
        raise ValueError(
            f"normalize_mlps: no nerfstudio MLP named {sorted(wanted - set(replaced))} in {type(module).__name__}"
        )
    return replaced


class StatSetBinding(nn.Module):
    """A :class:`NormalizedMLP` called with a fixed statistics set: ``binding(x) == mlp(x, stat_set=index)``."""

    def __init__(self, mlp: NormalizedMLP, index: int) -> None:
        super().__init__()
        self.mlp = mlp
        self.index = index

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(x, stat_set=self.index)

    def get_out_dim(self) -> int:
        return self.mlp.get_out_dim()

    def extra_repr(self) -> str:
        return f"stat_set={self.index}"


def stat_set_view(module: nn.Module, index: int) -> nn.Module:
    """A shallow copy of ``module`` in which every :class:`NormalizedMLP` is called with statistics set ``index``.

    The view holds the very same submodules, parameters and buffers (moving or converting ``module`` moves the
    view's too); only the calls differ. Not registered anywhere, it adds nothing to a state dict."""
    if isinstance(module, NormalizedMLP):
        return StatSetBinding(module, index)
    children = dict(module.named_children())
    views = {name: stat_set_view(child, index) for name, child in children.items()}
    if all(views[name] is children[name] for name in children):
        return module
    view = copy.copy(module)
    view._modules = dict(module._modules)
    for name, child in views.items():
        view._modules[name] = child
    return view
