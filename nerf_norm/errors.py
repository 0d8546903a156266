"""Errors that are the user's to fix (bad paths, options, files): the CLI prints them without a traceback."""


class UserError(Exception):
    """A problem with the user's input, reported as one clear message (``error: ...``) and ``exit_code``."""

    exit_code = 2


def os_error_message(exc: OSError) -> str:
    """One line for a failed file operation: the path(s), then the system's reason."""
    paths = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
    reason = exc.strerror or str(exc)
    return f"{paths}: {reason}" if paths else reason


def install_user_error_hook() -> None:
    """Makes an uncaught :class:`UserError` end the process with its one-line message (``error: ...``, exit code
    1) instead of a traceback; other exceptions keep the previous hook. Installed when nerfstudio loads our
    method configurations, so ``ns-train`` reports e.g. a bad ``cameras_sphere.npz`` in one line. Failures of
    nerfstudio's own that have a known user-side cause (:func:`nerf_norm.nerfstudio.run_errors.explain`: a run
    folder without checkpoints, an unreadable checkpoint) get one line too."""
    import sys

    previous = sys.excepthook
    if getattr(previous, "_nerf_norm", False):
        return

    def hook(exc_type, exc, tb):
        if issubclass(exc_type, UserError):
            print(f"error: {exc}", file=sys.stderr)
            return
        from .nerfstudio.run_errors import explain

        message = explain(exc, tb)
        if message is not None:
            print(f"error: {message}", file=sys.stderr)
        else:
            previous(exc_type, exc, tb)

    hook._nerf_norm = True  # type: ignore[attr-defined]
    sys.excepthook = hook


def available_memory() -> int:
    """Bytes of memory available to a new allocation now (``MemAvailable``; total RAM where that is unknown)."""
    import os

    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def require_memory(what: str, nbytes: float, remedy: str = "choose a smaller size") -> None:
    """Refuses, with one line naming the size, the estimate, the memory available and ``remedy``, work whose
    memory cannot fit."""
    free = available_memory()
    if nbytes > free:
        raise UserError(
            f"{what} needs about {nbytes / 2**30:.1f} GiB of memory, more than the "
            f"{free / 2**30:.1f} GiB available here; {remedy}"
        )


def require_finite_positive(option: str, value: float) -> None:
    import math

    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise UserError(f"{option} must be a positive finite number, got {value}")
