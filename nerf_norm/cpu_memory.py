"""glibc malloc settings for CPU training loops: keep freed tensor memory in the process.

A full-batch step on the CPU frees and re-allocates the same large activations every iteration (``[T, C]``
float32, 7.3 MB each at T = 65,536 and C = 28). glibc serves such blocks from its heap or by ``mmap`` depending
on a threshold it adapts at run time, and returns free heap memory to the OS beyond a trim threshold. Which of
the two happens depends on the order of the allocations, so a step can fault in tens of megabytes of fresh,
zeroed pages: ``relu+cn`` at 10x28 on a 256x256 image faults in about 12,000 pages per step and ``relu``
none (``benchmarks/results/step_cost_image_glibc_malloc.md``).

:func:`retain_freed_memory` fixes both thresholds (``mallopt``), so blocks up to 32 MiB always come from the
heap and freed memory stays in the process for the next step: no page faults in the steady state, at the cost
of keeping the process at its peak resident size. It changes nothing but speed, and does nothing outside glibc
(macOS, musl, Windows). The fitting commands apply it (:func:`nerf_norm.process.configure_process`) unless
``--no-retain-freed-memory`` is given.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform

log = logging.getLogger(__name__)

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc's largest accepted mmap threshold on 64-bit systems (HEAP_MAX_SIZE / 2)
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 1024 * 1024 * 1024


def uses_glibc() -> bool:
    """Whether this process runs on glibc (where ``mallopt`` exists)."""
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def retain_freed_memory() -> bool:
    """Sets glibc's mmap threshold to 32 MiB and its trim threshold to 1 GiB for this process (idempotent).

    Returns whether the settings are in effect: ``False`` outside glibc or when ``mallopt`` refuses them.
    """
    if not uses_glibc():
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = (
            libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
        )
    except (OSError, AttributeError) as exc:  # no usable libc / no mallopt
        log.debug("mallopt unavailable: %s", exc)
        return False
    if ok:
        log.debug("glibc malloc: mmap threshold %d, trim threshold %d", MMAP_THRESHOLD, TRIM_THRESHOLD)
    return ok
