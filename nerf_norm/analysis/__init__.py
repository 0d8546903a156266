"""Spectral-bias analysis of coordinate networks (paper section 3.3 and Proposition 1).

* :mod:`.ntk`: the empirical neural tangent kernel of a whole batch, its eigenvalues and the paper's
  trace-based statistics (Eq. 6).
* :mod:`.spectral`: relative approximation error per frequency band during training (the paper's Fig. 3).
"""

from .ntk import NTKStatistics, empirical_ntk, ntk_eigenvalues, ntk_statistics
from .spectral import SignalTask, SpectralDynamics, band_edges, band_errors, spectral_dynamics, two_tone_signal

__all__ = [
    "empirical_ntk",
    "ntk_eigenvalues",
    "ntk_statistics",
    "NTKStatistics",
    "SignalTask",
    "SpectralDynamics",
    "band_edges",
    "band_errors",
    "spectral_dynamics",
    "two_tone_signal",
]
