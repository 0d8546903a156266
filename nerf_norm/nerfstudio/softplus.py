"""``Softplus(beta)`` for unit-scale inputs: NeuS' SDF activation behind a norm.

NeuS' SDF network uses ``Softplus(beta=100)``. Behind a norm its inputs are unit-scale, so ``beta x`` reaches
+-300, and torch's CPU softplus, which evaluates ``exp(beta x)`` (and ``log1p`` of it) for every element, takes the
slow out-of-range paths of both: measured on ``[8192, 128]`` (one thread), 9.0 ms forward and 2.6 ms backward on
unit-scale inputs against 3.5 ms and 1.1 ms on the small pre-activations of the plain network. :class:`BoundedSoftplus`
computes the same function with the exponent clamped to ``[-30, threshold]`` (value off by less than
``exp(-30) / beta``, derivatives by less than ``exp(-30)``) in the fused CPU kernel ``csrc/softplus_cpu.cpp``:
4.6 ms forward, 0.8 ms backward, 1.0 ms for the second derivative NeuS' eikonal loss takes. Elsewhere (no kernel,
GPU, torch.compile) it is torch's softplus.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import kernels as cpu_kernels

_LOW = 30.0  # the exponent's lower clamp, as in the kernel


class _SoftplusFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, beta: float, threshold: float) -> Tensor:
        ctx.beta, ctx.threshold, ctx.kernel = beta, threshold, cpu_kernels.load_for_elementwise(x)
        ctx.save_for_backward(x)
        return ctx.kernel.softplus_forward(x, beta, threshold)

    @staticmethod
    def backward(ctx, g: Tensor):
        (x,) = ctx.saved_tensors
        return _SoftplusGradFunction.apply(x, g.contiguous(), ctx.beta, ctx.threshold), None, None


class _SoftplusGradFunction(torch.autograd.Function):
    """``h = g * softplus'(x)``, itself differentiable (the eikonal loss differentiates the SDF's input gradient)."""

    @staticmethod
    def forward(ctx, x: Tensor, g: Tensor, beta: float, threshold: float) -> Tensor:
        ctx.beta, ctx.threshold, ctx.kernel = beta, threshold, cpu_kernels.load_for_elementwise(x)
        ctx.save_for_backward(x, g)
        return ctx.kernel.softplus_grad(x, g, beta, threshold)

    @staticmethod
    def backward(ctx, gh: Tensor):
        x, g = ctx.saved_tensors
        if torch.is_grad_enabled():  # a third derivative: the same formulas as differentiable torch ops
            s = torch.sigmoid((ctx.beta * x).clamp(-_LOW, ctx.threshold))
            above = ctx.beta * x > ctx.threshold
            gx = torch.where(above, torch.zeros_like(x), gh * g * ctx.beta * s * (1 - s))
            gg = torch.where(above, gh, gh * s)
        else:
            gx, gg = ctx.kernel.softplus_grad_grad(x, g, gh.contiguous(), ctx.beta, ctx.threshold)
        return gx, gg, None, None


class BoundedSoftplus(nn.Softplus):
    """``nn.Softplus(beta, threshold)`` (same values to float rounding, same parameters and repr) on the fused
    CPU kernel for contiguous float32/float64 CPU inputs; torch's softplus otherwise. Input ``[...]``."""

    def forward(self, x: Tensor) -> Tensor:
        if torch.compiler.is_compiling() or cpu_kernels.load_for_elementwise(x) is None:
            return F.softplus(x, self.beta, self.threshold)
        return _SoftplusFunction.apply(x.contiguous(), float(self.beta), float(self.threshold))
