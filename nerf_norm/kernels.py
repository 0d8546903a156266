"""nerf_norm's CPU kernels, one small subsystem: where their sources are, how they are built (once per machine,
by ``scripts/install.sh`` through :func:`main`, or announced and built on first use), and which implementation
every caller uses.

One extension module holds every kernel: CrossNorm (``nerf_norm/csrc/cross_norm_cpu.cpp``), GlobalNorm
(``nerf_norm/csrc/global_norm_cpu.cpp``) and the softplus of NeuS' normalized SDF network
(``nerf_norm/nerfstudio/csrc/softplus_cpu.cpp``, beside :mod:`nerf_norm.nerfstudio.softplus`, which uses it).
They are built with ``torch.utils.cpp_extension`` (gcc and ninja) into a folder of this install's own
(:func:`build_directory`: under ``TORCH_EXTENSIONS_DIR`` or ``~/.cache/torch_extensions``, named by the CPU and by
the toolchain: this environment, its ninja, its compiler and torch), always with the same ninja (the one beside
this interpreter when there is one), so that running from an activated venv or through ``.venv/bin/nerf-norm``
never makes one ninja read the other's build log as changed and recompile everything. A build, and a wait for
another process's build, are announced.

Selection is decided once per process, at the first use (or by :func:`select`), from ``NERF_NORM_KERNEL``:
``auto`` (default: the kernels when they build, else the torch paths with one warning), ``cpp`` (the kernels or an
error), ``torch`` (torch paths only). ``NERF_NORM_CN_KERNEL`` is its old name (deprecated, still read).
The kernels apply to CPU tensors only; CUDA tensors always take the torch paths (no kernel is ever asked for).

CrossNorm's kernels share one parametrisation (see the C++ file): ``z = alpha x - a_t - b_i``,
``v = A_t + B_i + K (mr_t - mc_i)^2``. ``fused_forward`` computes the statistics, those ``[T]``/``[C]``
coefficients (:class:`CrossNormKernelState`) and the output pass in one call; ``fused_backward`` and
``fused_double_backward`` reuse them.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import warnings
from pathlib import Path
from typing import Iterator, List, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

log = logging.getLogger(__name__)

_PACKAGE = Path(__file__).resolve().parent
_CSRC = _PACKAGE / "csrc"
_SOURCES = (
    _CSRC / "cross_norm_cpu.cpp",
    _CSRC / "global_norm_cpu.cpp",
    _PACKAGE / "nerfstudio" / "csrc" / "softplus_cpu.cpp",
)
_HEADERS = (_CSRC / "row_blocks.h",)  # included by the sources: a change rebuilds too (ninja tracks them)
# Vectorisation needs sqrt without errno and reorderable float sums; NaN/Inf semantics are kept (no
# -ffinite-math-only). -march=native: the build is per machine, named by the CPU's feature flags.
# -fopenmp: at::parallel_for is inlined into this module and is OpenMP-parallel only when compiled so.
_CFLAGS = [
    "-O3",
    "-march=native",
    "-fopenmp",
    "-fno-math-errno",
    "-fno-trapping-math",
    "-fassociative-math",
    "-fno-signed-zeros",
]
_lock = threading.Lock()


def _ninja() -> Optional[str]:
    """The ninja every build of this install uses: the one beside this interpreter (pip's ``ninja`` wheel in the
    venv), else the first on PATH. Two ninja versions read each other's ``.ninja_log`` as changed and rebuild
    everything, so the choice must not depend on whether the venv is activated."""
    import shutil
    import sys

    local = os.path.join(os.path.dirname(sys.executable), "ninja")
    return local if os.access(local, os.X_OK) else shutil.which("ninja")


def _use_one_ninja() -> None:
    """torch's JIT build runs ``ninja`` from PATH: put :func:`_ninja`'s folder first."""
    ninja = _ninja()
    if ninja is None:
        return
    bindir = os.path.dirname(ninja)
    path = os.environ.get("PATH", "")
    if path.split(os.pathsep)[0] != bindir:
        os.environ["PATH"] = bindir + os.pathsep + path


@functools.lru_cache(maxsize=None)
def _toolchain_tag() -> str:
    """Short hash of what a build depends on besides the sources and flags: this environment (``sys.prefix``),
    the ninja and the C++ compiler it runs, and torch's version."""
    import hashlib
    import shutil
    import sys

    compiler = os.environ.get("CXX") or shutil.which("c++") or ""
    parts = [sys.prefix, _ninja() or "", os.path.realpath(compiler) if compiler else "", torch.__version__]
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:8]


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
    """This install's build folder: ``TORCH_EXTENSIONS_DIR`` (or ``~/.cache/torch_extensions``) /
    ``nerf_norm`` / the kernel's name (CPU tag) and :func:`_toolchain_tag`."""
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "torch_extensions")
    return Path(root) / "nerf_norm" / f"{_name()}-{_toolchain_tag()}"


def _building_elsewhere(folder: Path) -> bool:
    """Whether another process holds the build lock of ``folder`` (torch's advisory lock, released by the kernel
    when its holder dies)."""
    from filelock import FileLock, Timeout

    lock = folder / "lock"
    if not lock.exists():
        return False
    try:
        with FileLock(str(lock), timeout=0):
            return False
    except Timeout:
        return True


def is_built() -> bool:
    """Whether this machine's kernel is compiled from the current sources (then loading it compiles nothing;
    torch rebuilds a library older than its sources)."""
    built = build_directory() / f"{_name()}.so"
    return built.exists() and built.stat().st_mtime >= max(src.stat().st_mtime for src in _SOURCES + _HEADERS)


MODES = ("auto", "cpp", "torch")
ENV = "NERF_NORM_KERNEL"
_OLD_ENV = "NERF_NORM_CN_KERNEL"  # deprecated name of ENV
_mode: Optional[str] = None


def _mode_from_environment() -> str:
    value = os.environ.get(ENV)
    if value is None and _OLD_ENV in os.environ:
        warnings.warn(f"{_OLD_ENV} is deprecated; set {ENV} instead (same values)", FutureWarning, stacklevel=3)
        value = os.environ[_OLD_ENV]
    value = (value or "auto").lower()
    if value not in MODES:
        raise ValueError(f"{ENV} must be auto, cpp or torch, got {value!r}")
    return value


def select(value: Optional[str] = None) -> str:
    """Decides which implementation the norms and NeuS' softplus use from now on: ``auto``, ``cpp`` or
    ``torch`` (``None``: from ``NERF_NORM_KERNEL``). Returns the mode in force."""
    global _mode
    if value is not None and value not in MODES:
        raise ValueError(f"kernel mode must be one of {', '.join(MODES)}, got {value!r}")
    _mode = value if value is not None else _mode_from_environment()
    return _mode


def mode() -> str:
    """The mode in force, decided at the first call (:func:`select`)."""
    return _mode if _mode is not None else select()


@contextlib.contextmanager
def selected(value: str) -> Iterator[None]:
    """Within the block, ``value`` is the mode (tests and benchmarks compare the paths in one process)."""
    before = mode()
    select(value)
    try:
        yield
    finally:
        select(before)


def load():
    """The compiled module, or ``None`` when the mode is ``torch`` or it cannot be built (``auto``)."""
    current = mode()
    if current == "torch":
        return None
    if _module is not None:
        return _module
    if _failed is None:
        with _lock:
            if _module is None and _failed is None:
                _build()
    if _module is None and current == "cpp":
        raise RuntimeError(f"the nerf_norm CPU kernels could not be built: {_failed}")
    return _module


def _build() -> None:
    global _module, _failed
    try:
        load_extension = _cpp_extension().load
        _use_one_ninja()
        name = _name()
        folder = build_directory()
        folder.mkdir(parents=True, exist_ok=True)
        if _building_elsewhere(folder):
            log.warning(
                "waiting for another process that is building the nerf_norm CPU kernels in %s (about 2 minutes)", folder
            )
        elif not is_built() and _announce_build:
            log.warning(
                "building the nerf_norm CPU kernels in %s (once per install, about 2 minutes; "
                "scripts/install.sh does this at install time)",
                folder,
            )
        _module = load_extension(
            name=name,
            sources=[str(src) for src in _SOURCES],
            extra_cflags=_CFLAGS + _vector_flags(),
            extra_ldflags=["-fopenmp"],
            build_directory=str(folder),
            verbose=False,
        )
    except Exception as exc:  # noqa: BLE001 - any build problem means: use the torch paths
        _failed = f"{exc.__class__.__name__}: {exc}"
        log.warning("nerf_norm CPU kernels unavailable, using the torch paths (%s)", _failed)


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


class CrossNormKernelState(NamedTuple):
    """What the CrossNorm forward kernel keeps for its backward passes: the ``[T]`` row and ``[C]`` column
    coefficients of ``z = alpha x - a_t - b_i``, ``v = A_t + B_i + K (mr_t - mc_i)^2`` (x's dtype) and the float64
    ``scalars`` (alpha, K, N, n, lam_row, lam_col)."""

    a: Tensor
    A: Tensor
    row_mean: Tensor
    b: Tensor
    B: Tensor
    col_mean: Tensor
    scalars: Tensor


def cross_norm_forward(
    module,
    x: Tensor,
    weight: Optional[Tensor],
    bias: Optional[Tensor],
    out_shape,
    variant: str,
    eps: float,
    relu: bool,
    columns: Optional[Tuple[Tensor, Tensor, float]] = None,
    running: Optional[Tuple[Tensor, Tensor, Tensor, float]] = None,
) -> Tuple[Tensor, CrossNormKernelState]:
    """CrossNorm of ``x [T, C]`` in one native call: ``(y, state)`` with ``y`` in ``out_shape`` (``relu(y)`` with
    ``relu``) and ``state`` the coefficient vectors the backward needs.

    ``columns``: (mean, variance with the variant's correction, n) replacing the batch's column statistics.
    ``running``: (running_mean, running_var, running_batch_size, factor) updated in place from the batch.
    """
    col_mean, col_var, n = columns if columns is not None else (_NONE, _NONE, 0.0)
    r_mean, r_var, r_n, factor = running if running is not None else (_NONE, _NONE, _NONE, 0.0)
    y, *state = module.fused_forward(
        x,
        _weight(x, weight),
        _bias(x, bias),
        list(out_shape),
        variant == "paper",
        eps,
        relu,
        col_mean,
        col_var,
        float(n),
        r_mean,
        r_var,
        r_n,
        float(factor),
    )
    return y, CrossNormKernelState(*state)


def cross_norm_backward(
    module,
    x: Tensor,
    gy: Tensor,
    weight: Optional[Tensor],
    bias: Optional[Tensor],
    state: CrossNormKernelState,
    batch_columns: bool,
    relu: bool,
) -> Tuple[Tensor, Tensor, Tensor]:
    """(dx, dweight, dbias) of :func:`cross_norm_forward`'s output; with ``relu``, ``gy`` is the gradient of
    ``relu(y)``."""
    dx, dw, db = module.fused_backward(x, gy, _weight(x, weight), _bias(x, bias), list(state), batch_columns, relu)
    return dx, dw, db


def cross_norm_double_backward(
    module,
    x: Tensor,
    gy: Tensor,
    v: Tensor,
    weight: Optional[Tensor],
    bias: Optional[Tensor],
    gdw: Optional[Tensor],
    gdb: Optional[Tensor],
    vectors: Tuple[Tensor, ...],
    N: float,
    n: float,
    K: float,
    batch_columns: bool,
    relu: bool,
) -> Tuple[Tensor, Tensor, Tensor]:
    """(grad x, grad weight, grad gy) of CrossNorm's (paper variant) first backward, in three native passes;
    ``vectors`` = (mr, mc, mrs, mcs, A, Bc) as :mod:`nerf_norm.norms.cross_norm_function` prepares them."""
    zeros = x.new_zeros(x.shape[1])
    return tuple(
        module.fused_double_backward(
            x.contiguous(),
            gy.contiguous(),
            v.contiguous(),
            _weight(x, weight),
            _bias(x, bias),
            gdw.contiguous() if gdw is not None else zeros,
            gdb.contiguous() if gdb is not None else zeros,
            *[t.to(x.dtype).contiguous() for t in vectors],
            float(N),
            float(n),
            float(K),
            batch_columns,
            relu,
        )
    )


def main() -> int:
    """Builds (or finds) this machine's kernel; scripts/install.sh runs it at install time."""
    import sys

    logging.basicConfig(level=logging.WARNING, format="[install] %(message)s")
    if mode() == "torch":
        print(f"[install] {ENV}=torch: the torch paths are used, no kernel built")
        return 0
    global _announce_build
    _announce_build = False
    built = is_built()
    if not built:
        print(
            f"[install] building the nerf_norm CPU kernels in {build_directory()} (once per install, about 2 minutes)",
            flush=True,
        )
    if load() is None:
        print(
            f"[install] the nerf_norm CPU kernels could not be built ({_failed}); CrossNorm, GlobalNorm and "
            "NeuS' softplus will use their torch paths (same results, slower on the CPU). It needs a C++ compiler "
            "(g++) with OpenMP and ninja.",
            file=sys.stderr,
        )
        return 0
    print(f"[install] nerf_norm CPU kernels {'found' if built else 'built'}: {build_directory()}")
    return 0
