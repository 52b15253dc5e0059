"""The doubly periodic Fourier grid: wavenumbers, the 2/3 dealiasing mask and Parseval sums.

Layout (torch.fft.rfft2 over the last two dims of a (..., y, x) field): spectral arrays have shape
(..., n, n//2 + 1), indexed [ky, kx]; ky runs over the full `fftfreq` range, kx over `rfftfreq`.
Transforms are unnormalised ("backward"), so the mean of a field f is f̂[0, 0] / n².
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from sciscore.errors import UserError

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(eq=False)
class Grid:
    """A square n × n grid on [0, L)², with its wavenumbers on `device` in `dtype`.

    Attributes set from (n, length, device, dtype):
    x, y : (n,) grid points 0, dx, ..., L − dx
    kx : (1, n//2+1) and ky : (n, 1) wavenumbers (2π/L) × integers
    k2 : (n, n//2+1) |k|², and inv_k2 = 1/|k|² with inv_k2[0, 0] = 0 (the mean has no streamfunction)
    dealias : (n, n//2+1) 1 where 3|kx| < n and 3|ky| < n (square 2/3 rule), 0 elsewhere
    parseval : (n, n//2+1) weights that turn a half-plane sum into the full-plane sum
    """

    n: int
    length: float = 2 * math.pi
    device: torch.device | str = "cpu"
    dtype: torch.dtype = torch.float64
    x: torch.Tensor = field(init=False, repr=False)
    y: torch.Tensor = field(init=False, repr=False)
    kx: torch.Tensor = field(init=False, repr=False)
    ky: torch.Tensor = field(init=False, repr=False)
    k2: torch.Tensor = field(init=False, repr=False)
    inv_k2: torch.Tensor = field(init=False, repr=False)
    dealias: torch.Tensor = field(init=False, repr=False)
    parseval: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self):
        if isinstance(self.dtype, str):
            if self.dtype not in DTYPES:
                raise UserError(f"dtype {self.dtype!r} is not supported; choose one of {sorted(DTYPES)}")
            self.dtype = DTYPES[self.dtype]
        if self.dtype not in DTYPES.values():
            raise UserError(f"dtype {self.dtype} is not supported; use torch.float32 or torch.float64")
        if int(self.n) != self.n or self.n < 8 or self.n % 2:
            raise UserError(f"grid size n={self.n} must be an even integer >= 8")
        self.n = int(self.n)
        self.device = torch.device(self.device)
        n, kw = self.n, dict(device=self.device, dtype=self.dtype)
        self.x = torch.arange(n, **kw) * (self.length / n)
        self.y = self.x.clone()
        integer_kx = torch.fft.rfftfreq(n, d=1.0 / n, **kw)
        integer_ky = torch.fft.fftfreq(n, d=1.0 / n, **kw)
        self.kx = (2 * math.pi / self.length) * integer_kx[None, :]
        self.ky = (2 * math.pi / self.length) * integer_ky[:, None]
        self.k2 = self.kx**2 + self.ky**2
        self.inv_k2 = torch.where(self.k2 > 0, 1.0 / torch.where(self.k2 > 0, self.k2, 1.0), 0.0)
        # a quadratic product of modes with 3|k| < n aliases only onto removed modes
        keep = (3 * integer_kx[None, :].abs() < n) & (3 * integer_ky[:, None].abs() < n)
        self.dealias = keep.to(self.dtype)
        weights = torch.full((n, n // 2 + 1), 2.0, **kw)
        weights[:, 0] = 1.0
        weights[:, -1] = 1.0  # the kx = n/2 column is its own mirror image
        self.parseval = weights

    @property
    def dx(self) -> float:
        """Grid spacing L/n."""
        return self.length / self.n

    @property
    def complex_dtype(self) -> torch.dtype:
        return torch.complex64 if self.dtype == torch.float32 else torch.complex128

    @property
    def shape_spectral(self) -> tuple[int, int]:
        return (self.n, self.n // 2 + 1)

    def rfft(self, field: torch.Tensor) -> torch.Tensor:
        """(..., n, n) real → (..., n, n//2+1) complex, unnormalised."""
        return torch.fft.rfft2(field)

    def irfft(self, field_hat: torch.Tensor) -> torch.Tensor:
        """(..., n, n//2+1) complex → (..., n, n) real, the inverse of `rfft`."""
        return torch.fft.irfft2(field_hat, s=(self.n, self.n))

    @property
    def kept_wavenumber(self) -> int:
        """K = (n − 1) // 3, the largest |integer wavenumber| that the 2/3 rule keeps (3K < n)."""
        return (self.n - 1) // 3

    def kept_modes(self, field_hat: torch.Tensor) -> torch.Tensor:
        """A view (..., 2, K+1, K+1) of a spectral array (..., n, n//2+1) on the modes the 2/3 rule keeps.

        Block 0 holds the rows ky = 0..K, block 1 the rows ky = −K−1..−1; columns are kx = 0..K.
        The row ky = −K−1 is removed by the rule (3(K+1) >= n), so it is zero in a dealiased array; it
        gives both blocks the same size, so one strided view covers every kept mode. The simulator
        does all its pointwise spectral arithmetic on these views (under half of the modes).
        """
        if tuple(field_hat.shape[-2:]) != self.shape_spectral:
            raise ValueError(f"expected a spectral array (..., {self.n}, {self.n // 2 + 1}), got {tuple(field_hat.shape)}")
        K, n = self.kept_wavenumber, self.n
        row_stride, column_stride = field_hat.stride()[-2:]
        return field_hat.as_strided((*field_hat.shape[:-2], 2, K + 1, K + 1),
                                    (*field_hat.stride()[:-2], (n - K - 1) * row_stride, row_stride, column_stride),
                                    field_hat.storage_offset())

    def kept_columns(self, columns: torch.Tensor) -> torch.Tensor:
        """The (..., 2, K+1, K+1) view of `kept_modes` on a column array (..., K+1, n), [kx, ky].

        A column array holds the columns kx = 0..K of a spectral array, transposed so that each
        column (all n values of ky) is contiguous: the layout `irfft_columns` transforms.
        """
        K, n = self.kept_wavenumber, self.n
        if tuple(columns.shape[-2:]) != (K + 1, n):
            raise ValueError(f"expected a column array (..., {K + 1}, {n}), got {tuple(columns.shape)}")
        column_stride, row_stride = columns.stride()[-2:]
        return columns.as_strided((*columns.shape[:-2], 2, K + 1, K + 1),
                                  (*columns.stride()[:-2], (n - K - 1) * row_stride, row_stride, column_stride),
                                  columns.storage_offset())

    def irfft_columns(self, columns: torch.Tensor, work: torch.Tensor) -> torch.Tensor:
        """`irfft` of a spectral array that is zero in the columns kx > K, given as its column array
        (..., K+1, n) (see `kept_columns`) -> (..., n, n) real.

        A 2D inverse real FFT is n//2+1 inverse complex FFTs over ky, one per column kx, then n
        inverse real FFTs over kx; the ky-transforms of the n//2 − K zero columns give zeros and are
        skipped (a third of that pass). `work` is a (..., n, n//2+1) complex array whose columns
        kx > K are zero; its first K+1 columns are overwritten. torch.fft.irfft2 on the CPU runs the
        same two 1D passes, so the result is bitwise that of `irfft` there.
        """
        K = self.kept_wavenumber
        work[..., : K + 1].copy_(torch.fft.ifft(columns, dim=-1).transpose(-1, -2))
        return torch.fft.irfft(work, n=self.n, dim=-1)

    def domain_mean(self, weights_hat: torch.Tensor) -> torch.Tensor:
        """Σ over the full k-plane of a real spectral density given on the half plane, / n⁴.

        For f̂, ĝ = rfft2(f), rfft2(g): domain_mean(Re(conj(f̂) ĝ)) = ⟨f g⟩ (Parseval), shape (...,).
        """
        return (self.parseval * weights_hat).sum(dim=(-2, -1)) / self.n**4

    def wavenumber_shells(self) -> torch.Tensor:
        """(n, n//2+1) integer shell index round(|k| L / 2π) for isotropic spectra."""
        return torch.round(torch.sqrt(self.k2) * self.length / (2 * math.pi)).long()
