"""Process-wide settings of a ``nerf-norm`` command: torch's CPU threads and the allocator's treatment of freed
memory. Only entry points apply them (the CLI's fitting commands, a sweep's cell in its Ray worker); importing
nerf_norm or training with its :class:`~nerf_norm.tasks.base.Trainer` changes neither."""

from __future__ import annotations

from typing import Optional

import torch

from .cpu_memory import retain_freed_memory as _retain_freed_memory

__all__ = ["configure_process"]


def configure_process(threads: Optional[int] = None, retain_freed_memory: bool = False) -> None:
    """``threads``: torch's CPU threads (None: leave torch's choice); ``retain_freed_memory``: keep freed tensor
    memory in the process under glibc (:mod:`nerf_norm.cpu_memory`; speed only)."""
    if threads:
        torch.set_num_threads(threads)
    if retain_freed_memory:
        _retain_freed_memory()
