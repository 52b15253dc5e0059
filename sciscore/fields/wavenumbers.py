"""Integer wavenumbers and radial shells of a periodic grid on [0, 2π)² (in `numpy.fft.fft2` order).

Shell k holds the modes with k − 1/2 ≤ |k| < k + 1/2. The one definition of a shell for the
normalizer's spectral whitening and the diagnostics' power spectra.
"""

from __future__ import annotations

import numpy as np


def integer_wavenumbers(ny: int, nx: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer wavenumbers (ky, kx) of an (ny, nx) grid on [0, 2π)², in `fft2` order, shape (ny, nx)."""
    ky = np.fft.fftfreq(ny, d=1.0 / ny)
    kx = np.fft.fftfreq(nx, d=1.0 / nx)
    return np.meshgrid(ky, kx, indexing="ij")


def shell_index(ny: int, nx: int) -> np.ndarray:
    """Shell of each mode, floor(|k| + 1/2), shape (ny, nx), int."""
    ky, kx = integer_wavenumbers(ny, nx)
    return np.floor(np.hypot(ky, kx) + 0.5).astype(np.int64)


def shell_mode_counts(ny: int, nx: int) -> np.ndarray:
    """Number of Fourier modes in each shell 0..kmax."""
    return np.bincount(shell_index(ny, nx).ravel())
