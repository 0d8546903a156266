"""Matplotlib for writing figure files: the non-interactive Agg backend, chosen before pyplot is imported."""

from __future__ import annotations


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display needed; safe on headless machines and in tests)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
