"""The binding of nerf_norm's optional fused CPU kernels, one extension module built once per machine by
``scripts/install.sh`` (:func:`main`) or, failing that, announced and built on first use: CrossNorm
(``nerf_norm/csrc/cross_norm_cpu.cpp``), GlobalNorm (``global_norm_cpu.cpp``, used by
:mod:`nerf_norm.norms.global_norm_function`) and the softplus of NeuS' normalized SDF network (``softplus_cpu.cpp``,
used by :mod:`nerf_norm.nerfstudio.softplus`).

The kernels make one pass over ``[T, C]`` for the statistics and one for the output in forward, two passes in
backward and three for the paper variant's second derivative (``fused_double_backward``, the closed form of
``nerf_norm/norms/cross_norm_grad.py``), instead of the dozens of elementwise torch ops of the eager path. They are built with
``torch.utils.cpp_extension`` (gcc and ninja; cached under ``~/.cache/torch_extensions``). Choose with
``NERF_NORM_CN_KERNEL`` (for all three): ``auto`` (default: the kernels when they build, else the eager paths with
one warning), ``cpp`` (the kernels or an error), ``torch`` (eager only).

Both variants share one parametrisation (see the C++ file): ``z = alpha x - a_t - b_i``,
``v = A_t + B_i + K (mr_t - mc_i)^2``. The native ``fused_forward``/``fused_backward`` compute the statistics,
those ``[T]``/``[C]`` coefficients (in float64) and the passes over ``[T, C]`` in one call each, so a CrossNorm
costs no Python-level small tensor ops.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from pathlib import Path
from typing import List, Optional, Tuple

import torch
from torch import Tensor

log = logging.getLogger(__name__)

_CSRC = Path(__file__).resolve().parent.parent / "csrc"
_SOURCES = (_CSRC / "cross_norm_cpu.cpp", _CSRC / "global_norm_cpu.cpp", _CSRC / "softplus_cpu.cpp")
_HEADERS = (_CSRC / "row_blocks.h",)  # included by the sources: a change rebuilds too (ninja tracks them)
# Vectorisation needs sqrt without errno and reorderable float sums; NaN/Inf semantics are kept (no
# -ffinite-math-only). -march=native: the build is per machine, named by the CPU's feature flags.
# -fopenmp: at::parallel_for is inlined into this module and is OpenMP-parallel only when compiled so.
_CFLAGS = ["-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-fno-trapping-math", "-fassociative-math",
           "-fno-signed-zeros"]
_lock = threading.Lock()


def _ninja_on_path() -> None:
    """torch's JIT build runs ``ninja`` from PATH; the ``ninja`` wheel puts it next to this interpreter,
    which is not on PATH when the venv is used without being activated."""
    import shutil
    import sys

    bindir = os.path.dirname(sys.executable)
    if shutil.which("ninja") is None and os.path.exists(os.path.join(bindir, "ninja")):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")


@functools.lru_cache(maxsize=None)
def _vector_flags() -> List[str]:
    """ATen's ``Vectorized`` (used by softplus_cpu.cpp, with torch's own Sleef exp / log1p) chooses its SIMD
    implementation by the ``CPU_CAPABILITY`` macros, which torch's per-capability builds set; without them it is a
    scalar fallback. The build is per machine, so AVX2 is used where this CPU has it."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        flags = []
    return ["-DCPU_CAPABILITY_AVX2", "-DCPU_CAPABILITY=AVX2"] if {"avx2", "fma"} <= set(flags) else []


def _cpu_tag() -> str:
    """Short hash of the CPU model and feature flags, so a cached -march=native build is never reused on
    a different processor."""
    import hashlib
    import platform

    info = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            info += "".join(line for line in f if line.startswith(("flags", "model name")))
    except OSError:
        pass
    return hashlib.sha1(info.encode()).hexdigest()[:10]


_module = None
_failed: Optional[str] = None
_announce_build = True  # main() says it itself


def _cpp_extension():
    """``torch.utils.cpp_extension``, imported without its "No CUDA runtime is found" warning (it looks for a
    CUDA toolkit at import time, which says nothing about a CPU kernel)."""
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        import torch.utils.cpp_extension as cpp_extension
    finally:
        logger.setLevel(level)
    return cpp_extension


def _name() -> str:
    return f"nerf_norm_cross_norm_cpu_{_cpu_tag()}"


def build_directory() -> Path:
    """Where torch caches this machine's build (``TORCH_EXTENSIONS_DIR`` or ``~/.cache/torch_extensions``)."""
    return Path(_cpp_extension()._get_build_directory(_name(), verbose=False))


def is_built() -> bool:
    """Whether this machine's kernel is compiled from the current sources (then loading it compiles nothing;
    torch rebuilds a library older than its sources)."""
    built = build_directory() / f"{_name()}.so"
    return built.exists() and built.stat().st_mtime >= max(src.stat().st_mtime for src in _SOURCES + _HEADERS)


def mode() -> str:
    value = os.environ.get("NERF_NORM_CN_KERNEL", "auto").lower()
    if value not in ("auto", "cpp", "torch"):
        raise ValueError(f"NERF_NORM_CN_KERNEL must be auto, cpp or torch, got {value!r}")
    return value


def load():
    """The compiled module, or ``None`` when it is switched off or cannot be built (``auto``)."""
    global _module, _failed
    if mode() == "torch":
        return None
    if _module is not None:
        return _module
    if _failed is not None:
        if mode() == "cpp":
            raise RuntimeError(f"the CrossNorm CPU kernel could not be built: {_failed}")
        return None
    with _lock:
        if _module is None and _failed is None:
            try:
                load_extension = _cpp_extension().load
                _ninja_on_path()
                name = _name()
                if not is_built() and _announce_build:
                    log.warning("building the nerf_norm CPU kernels %s (once per machine, about 2 minutes; "
                                "scripts/install.sh does this at install time)", name)
                _module = load_extension(name=name, sources=[str(src) for src in _SOURCES],
                                         extra_cflags=_CFLAGS + _vector_flags(), extra_ldflags=["-fopenmp"],
                                         verbose=False)
            except Exception as exc:  # noqa: BLE001 - any build problem means: use the eager path
                _failed = f"{exc.__class__.__name__}: {exc}"
                log.warning("CrossNorm CPU kernel unavailable, using the eager torch path (%s)", _failed)
    return load()


def load_for(x: Tensor):
    """The compiled module when it applies to ``x`` (a 2D float32/float64 CPU tensor), else ``None``."""
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64) or x.dim() != 2:
        return None
    return load()


def load_for_elementwise(x: Tensor):
    """The compiled module for an elementwise kernel (softplus) on ``x`` (a float32/float64 CPU tensor of any
    shape), else ``None``; also ``None`` where the build has no SIMD flags (:func:`_vector_flags`), where the
    kernel would be scalar and slower than torch's own."""
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64) or not _vector_flags():
        return None
    return load()


def usable(x: Tensor) -> bool:
    return load_for(x) is not None


def _weight(x: Tensor, weight: Optional[Tensor]) -> Tensor:
    return weight.contiguous() if weight is not None else x.new_ones(x.shape[1])


def _bias(x: Tensor, bias: Optional[Tensor]) -> Tensor:
    return bias.contiguous() if bias is not None else x.new_zeros(x.shape[1])


_NONE = torch.empty(0)


def forward(module, x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], out_shape, variant: str, eps: float,
            relu: bool, columns: Optional[Tuple[Tensor, Tensor, float]] = None,
            running: Optional[Tuple[Tensor, Tensor, Tensor, float]] = None) -> Tuple[Tensor, List[Tensor]]:
    """CrossNorm of ``x [T, C]`` in one native call: ``(y, state)`` with ``y`` in ``out_shape`` (``relu(y)`` with
    ``relu``) and ``state`` the coefficient vectors the backward needs.

    ``columns``: (mean, variance with the variant's correction, n) replacing the batch's column statistics.
    ``running``: (running_mean, running_var, running_batch_size, factor) updated in place from the batch.
    """
    col_mean, col_var, n = columns if columns is not None else (_NONE, _NONE, 0.0)
    r_mean, r_var, r_n, factor = running if running is not None else (_NONE, _NONE, _NONE, 0.0)
    y, *state = module.fused_forward(x, _weight(x, weight), _bias(x, bias), list(out_shape), variant == "paper", eps,
                                     relu, col_mean, col_var, float(n), r_mean, r_var, r_n, float(factor))
    return y, state


def backward(module, x: Tensor, gy: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], state: List[Tensor],
             batch_columns: bool, relu: bool) -> Tuple[Tensor, Tensor, Tensor]:
    """(dx, dweight, dbias) of :func:`forward`'s output; with ``relu``, ``gy`` is the gradient of ``relu(y)``."""
    dx, dw, db = module.fused_backward(x, gy, _weight(x, weight), _bias(x, bias), state, batch_columns, relu)
    return dx, dw, db



def double_backward(module, x: Tensor, gy: Tensor, v: Tensor, weight: Optional[Tensor], bias: Optional[Tensor],
                    gdw: Optional[Tensor], gdb: Optional[Tensor], vectors: Tuple[Tensor, ...], N: float, n: float,
                    K: float, batch_columns: bool, relu: bool) -> Tuple[Tensor, Tensor, Tensor]:
    """(grad x, grad weight, grad gy) of CrossNorm's (paper variant) first backward, in three native passes;
    ``vectors`` = (mr, mc, mrs, mcs, A, Bc) as ``nerf_norm/norms/cross_norm_grad.py`` prepares them."""
    zeros = x.new_zeros(x.shape[1])
    return tuple(module.fused_double_backward(
        x.contiguous(), gy.contiguous(), v.contiguous(), _weight(x, weight), _bias(x, bias),
        gdw.contiguous() if gdw is not None else zeros, gdb.contiguous() if gdb is not None else zeros,
        *[t.to(x.dtype).contiguous() for t in vectors], float(N), float(n), float(K), batch_columns, relu))

def main() -> int:
    """Builds (or finds) this machine's kernel; scripts/install.sh runs it at install time."""
    import sys

    logging.basicConfig(level=logging.WARNING, format="[install] %(message)s")
    if mode() == "torch":
        print("[install] NERF_NORM_CN_KERNEL=torch: the torch paths are used, no kernel built")
        return 0
    global _announce_build
    _announce_build = False
    built = is_built()
    if not built:
        print("[install] building the nerf_norm CPU kernels (once per machine, about 2 minutes)", flush=True)
    if load() is None:
        print(f"[install] the nerf_norm CPU kernels could not be built ({_failed}); CrossNorm, GlobalNorm and "
              "NeuS' softplus will use their torch paths (same results, slower on the CPU). It needs a C++ compiler "
              "(g++) with OpenMP and ninja.", file=sys.stderr)
        return 0
    print(f"[install] nerf_norm CPU kernels {'found' if built else 'built'}: {build_directory()}")
    return 0
