"""Per-channel normalizers fitted on the training split with streaming (dask) reductions.

Every method is one affine map that treats a field's spatial mean m and its fluctuation x - m
separately (Reynolds decomposition x = m + x'):

    y = (m - offset) / mean_scale + (x - m) / fluctuation_scale            (1)

- `standard`:      offset = data mean, mean_scale = fluctuation_scale = data std (z-score);
- `minmax`:        offset = (max + min)/2, scales = (max - min)/2 (pixel values to [-1, 1]);
- `mean-spatial`:  CliMAgen's MeanSpatialScaling: the per-sample spatial means are mapped to
  [-1, 1] by their own min/max, the fluctuation by max |x'|. Unlike CliMAgen, the fluctuation is
  not shifted, so the spatial mean of y carries the field mean only.

Inverse of (1): the spatial mean of y is m_y = (m - offset)/mean_scale because x' has zero mean,
so m = offset + mean_scale m_y and x = m + fluctuation_scale (y - m_y). A channel whose spatial
mean is the same in every sample gets mean_scale = 1 (its normalized mean is then 0 up to the
data's round-off), so the map stays exactly invertible.

Optionally a channel is first stretched above zero, before (1):

    x -> x + (A - 1) x+        (A = `positive_stretch`, x+ = max(x, 0); A = 1 is the identity)   (2)

a monotone, piecewise-linear map with the inverse x~ -> x~ for x~ <= 0 and x~ / A above. It is
meant for supersaturation, whose positive values are squeezed into a thin spike just above zero
by fast condensation (99 % of the data below +0.06 against a standard deviation of 1.1): the
network then sees that spike A times wider, and its errors there shrink A times on the way back.
The spatial mean in (1) is the mean of the stretched field.

Optionally the fluctuation is then partly whitened, after (1), by a radial filter G_c(k) in
Fourier space (k: the shell of `sciscore.fields.wavenumbers`, |wavenumber| rounded; G_c(0) = 1,
so the spatial mean is untouched):

    y -> F^-1[ G_c(k) F[y] ],   G_c(k) = g_c max(p_c(k) / max_k' p_c(k'), 1e-6)^(-alpha/2)     (3)

where p_c(k) is the training data's power per Fourier mode in shell k (after (1)), alpha the
`spectral_whitening` exponent (0: identity, 1: full whitening) and g_c keeps the fluctuation
variance at its value before (3). With white Gaussian noise, every scale of the whitened field
loses its signal at a similar noise level, and the squared-error loss weighs errors at fine
scales by 1/p_c(k)^alpha more than before — the motivation of Falck et al. (2025, "A Fourier
space perspective on diffusion models", sec. 4) for equal-SNR noising: fine scales otherwise form
only in the last few noise levels and carry almost no weight in the loss. The floor 1e-6 bounds
the gain where the spectrum vanishes (a dealiased simulation's modes beyond its 2/3 cutoff). The
inverse divides by G_c(k); (3) commutes with periodic shifts, reflections and 90-degree rotations.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Sequence

import dask
import numpy as np
import xarray as xr

from sciscore.errors import UserError
from sciscore.fields.dims import field_dims
from sciscore.fields.wavenumbers import shell_index, shell_mode_counts
from sciscore.validation import check_names, check_numbers

METHODS = ("standard", "minmax", "mean-spatial")
ATTRIBUTE_NAME = "sciscore_normalizer"


@dataclass(frozen=True)
class Normalizer:
    """Per-channel affine normalization, eq. (1); channels in the order of `variables`."""

    method: str
    variables: tuple[str, ...]
    offset: tuple[float, ...]
    mean_scale: tuple[float, ...]
    fluctuation_scale: tuple[float, ...]
    positive_stretch: tuple[float, ...] | None = None   # A of eq. (2) per channel; None: all 1
    whitening_gain: tuple[tuple[float, ...], ...] | None = None  # G_c(k) of eq. (3), k = 0, 1, ...; None: identity
    spectral_whitening: float = 0.0                             # alpha of eq. (3), recorded with the gains

    def __post_init__(self):
        stretch = self.positive_stretch
        if stretch is not None:
            if len(stretch) != len(self.variables):
                raise UserError(f"positive_stretch needs one value per variable ({len(self.variables)}), got {len(stretch)}")
            if not all(np.isfinite(a) and a > 0 for a in stretch):
                raise UserError(f"positive_stretch values must be finite and > 0, got {list(stretch)}")
            if all(a == 1 for a in stretch):
                object.__setattr__(self, "positive_stretch", None)
        gain = self.whitening_gain
        if gain is not None:
            if len(gain) != len(self.variables) or len({len(g) for g in gain}) != 1:
                raise UserError(f"whitening_gain needs one table of equal length per variable ({len(self.variables)})")
            if not all(np.isfinite(v) and v > 0 for g in gain for v in g):
                raise UserError("whitening_gain values must be finite and > 0; refit the normalizer")

    def _whiten(self, y, inverse: bool):
        """Eq. (3) (or its inverse) per channel of y (..., C, H, W); identity without gains."""
        if self.whitening_gain is None:
            return y
        height, width = y.shape[-2:]
        shell = shell_index(height, width)[:, : width // 2 + 1]  # the rfft2 half-plane: kx = 0 .. width/2
        table = np.asarray(self.whitening_gain)
        if shell.max() >= table.shape[1]:
            raise UserError(f"the normalizer's whitening was fitted on a smaller grid than {height} x {width}; "
                            "refit it on data of this grid")
        gain = table[:, shell]                           # (C, H, W//2 + 1)
        if inverse:
            gain = 1 / gain
        if hasattr(y, "new_tensor"):
            import torch

            spectrum = torch.fft.rfft2(y) * y.new_tensor(gain)
            return torch.fft.irfft2(spectrum, s=(height, width))
        out = np.fft.irfft2(np.fft.rfft2(y) * gain, s=(height, width))
        return out.astype(y.dtype, copy=False)

    def _stretch(self, x, inverse: bool):
        """Eq. (2) (or its inverse) per channel of x (..., C, H, W); identity without a stretch."""
        if self.positive_stretch is None:
            return x
        factors = [a if not inverse else 1 / a for a in self.positive_stretch]
        shape = (len(self.variables), 1, 1)
        if hasattr(x, "new_tensor"):
            factor = x.new_tensor(factors).reshape(shape)
            return x + (factor - 1) * x.clamp(min=0)
        factor = np.asarray(factors, dtype=x.dtype).reshape(shape)
        return x + (factor - 1) * np.maximum(x, 0)

    def _params(self, x):
        shape = (len(self.variables), 1, 1)
        if x.shape[-3] != len(self.variables):
            raise UserError(
                f"normalizer for {list(self.variables)} expects {len(self.variables)} channels, got an array "
                f"of shape {tuple(x.shape)}"
            )
        if hasattr(x, "new_tensor"):  # torch tensor: keep device and dtype
            make = lambda v: x.new_tensor(v).reshape(shape)  # noqa: E731
        else:
            make = lambda v: np.asarray(v, dtype=x.dtype).reshape(shape)  # noqa: E731
        return make(self.offset), make(self.mean_scale), make(self.fluctuation_scale)

    def apply(self, x):
        """Physical -> normalized. `x`: (..., C, H, W) torch tensor or numpy array."""
        offset, mean_scale, fluct_scale = self._params(x)
        x = self._stretch(x, inverse=False)
        m = x.mean(axis=(-2, -1), keepdims=True) if isinstance(x, np.ndarray) else x.mean(dim=(-2, -1), keepdim=True)
        return self._whiten((m - offset) / mean_scale + (x - m) / fluct_scale, inverse=False)

    def invert(self, y):
        """Normalized -> physical; exact inverse of `apply` up to floating-point round-off."""
        offset, mean_scale, fluct_scale = self._params(y)
        y = self._whiten(y, inverse=True)
        m_y = y.mean(axis=(-2, -1), keepdims=True) if isinstance(y, np.ndarray) else y.mean(dim=(-2, -1), keepdim=True)
        return self._stretch(offset + mean_scale * m_y + fluct_scale * (y - m_y), inverse=True)

    def to_dict(self) -> dict:
        out = {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}
        if out["positive_stretch"] is None:
            del out["positive_stretch"]  # the format of normalizers without a stretch is unchanged
        if out["whitening_gain"] is None:
            del out["whitening_gain"], out["spectral_whitening"]  # nor without whitening
        else:
            out["whitening_gain"] = [list(g) for g in out["whitening_gain"]]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "Normalizer":
        try:
            if data["method"] not in METHODS:
                raise UserError(f"unknown normalizer method {data['method']!r}; choose one of {', '.join(METHODS)}")
            check_names(data["variables"], "normalizer.variables")
            n = len(data["variables"])
            keys = ("offset", "mean_scale", "fluctuation_scale") + (
                ("positive_stretch",) if data.get("positive_stretch") is not None else ())
            for key in keys:
                check_numbers(data[key], f"normalizer.{key}")
            fields = {k: tuple(float(v) for v in data[k]) for k in keys}
            if data.get("whitening_gain") is not None:
                for c, gain in enumerate(data["whitening_gain"]):
                    check_numbers(gain, f"normalizer.whitening_gain[{c}]")
                fields["whitening_gain"] = tuple(tuple(float(v) for v in g) for g in data["whitening_gain"])
            if any(len(v) != n for v in fields.values()):
                raise ValueError("parameter lengths differ from the number of variables")
            if "whitening_gain" in fields:
                fields["spectral_whitening"] = float(data["spectral_whitening"])
            return cls(method=data["method"], variables=tuple(data["variables"]), **fields)
        except (KeyError, TypeError, ValueError) as error:
            raise UserError(f"invalid normalizer description ({error}); refit it with fit_normalizer") from None

    def to_attrs(self) -> dict:
        """NetCDF global attributes that store this normalizer (one JSON string)."""
        return {ATTRIBUTE_NAME: json.dumps(self.to_dict())}

    @classmethod
    def from_attrs(cls, attrs: dict) -> "Normalizer":
        if ATTRIBUTE_NAME not in attrs:
            raise UserError(f"no {ATTRIBUTE_NAME!r} attribute found; the file was not written with a normalizer")
        return cls.from_dict(json.loads(attrs[ATTRIBUTE_NAME]))


def _nonzero(scale: float, fallback: float = 1.0) -> float:
    return scale if scale > 0 and np.isfinite(scale) else fallback


def fit_normalizer(
    ds: xr.Dataset,
    variables: Sequence[str],
    method: str = "standard",
    indices: Sequence[int] | None = None,
    positive_stretch: dict | None = None,
    spectral_whitening: float = 0.0,
) -> Normalizer:
    """Fit a `Normalizer` on `ds` (optionally only the samples `indices`, e.g. the training split).

    `positive_stretch`: {variable: A} for eq. (2); the other statistics are those of the stretched
    field. `spectral_whitening`: alpha of eq. (3) in [0, 1]; its gains come from the mean power
    spectrum of the normalized fields, read in chunks of samples. Statistics are dask reductions
    computed in one pass, so the data are streamed, not loaded.
    """
    if isinstance(spectral_whitening, bool) or not isinstance(spectral_whitening, (int, float)) \
            or not 0 <= spectral_whitening <= 1:
        raise UserError(f"spectral_whitening must be a number in [0, 1], got {spectral_whitening!r}")
    if method not in METHODS:
        raise UserError(f"unknown normalization {method!r}; choose one of {', '.join(METHODS)}")
    variables = [variables] if isinstance(variables, str) else list(variables)
    missing = [v for v in variables if v not in ds.data_vars]
    if missing:
        raise UserError(f"variable {missing} not found; available: {', '.join(map(str, ds.data_vars))}")
    if positive_stretch is not None and not isinstance(positive_stretch, dict):
        raise UserError(f"positive_stretch must be a table {{variable = A}}, got {positive_stretch!r}")
    stretch = dict(positive_stretch or {})
    unknown = [v for v in stretch if v not in variables]
    if unknown:
        raise UserError(f"positive_stretch names {unknown}, which are not among the variables {variables}")
    for name, factor in stretch.items():
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not (np.isfinite(factor) and factor > 0):
            raise UserError(f"positive_stretch for {name!r} must be a number > 0, got {factor!r}")
    dims = field_dims(ds)
    if indices is not None:
        ds = ds.isel({dims.sample: np.asarray(indices)})
    lazy = []
    for name in variables:
        da = ds[name].astype("float64")
        if stretch.get(name, 1) != 1:
            da = da + (stretch[name] - 1) * da.clip(min=0)
        m = da.mean(dims.spatial)
        fluct = da - m
        lazy.append((da.mean(), da.std(), da.min(), da.max(), m.min(), m.max(), abs(fluct).max()))
    stats = dask.compute(*lazy)
    offset, mean_scale, fluct_scale = [], [], []
    for name, values in zip(variables, stats):
        mean, std, lo, hi, m_lo, m_hi, fluct_max = (float(v) for v in values)
        if not (hi > lo):
            raise UserError(f"variable {name!r} is constant ({lo}); it cannot be normalized or learned")
        if method == "standard":
            offset.append(mean), mean_scale.append(std), fluct_scale.append(std)
        elif method == "minmax":
            offset.append((hi + lo) / 2), mean_scale.append((hi - lo) / 2), fluct_scale.append((hi - lo) / 2)
        else:
            # A constant spatial mean (up to the data's round-off) gets mean_scale 1; see module doc.
            constant_mean = (m_hi - m_lo) <= 1e-6 * fluct_max
            offset.append((m_hi + m_lo) / 2)
            mean_scale.append(1.0 if constant_mean else _nonzero((m_hi - m_lo) / 2))
            fluct_scale.append(_nonzero(fluct_max))
    normalizer = Normalizer(method, tuple(variables), tuple(offset), tuple(mean_scale), tuple(fluct_scale),
                            tuple(float(stretch.get(v, 1)) for v in variables))
    if spectral_whitening == 0:
        return normalizer
    gain = _whitening_gain(normalizer, ds, dims, float(spectral_whitening))
    return replace(normalizer, whitening_gain=gain, spectral_whitening=float(spectral_whitening))


def _whitening_gain(normalizer: Normalizer, ds: xr.Dataset, dims, alpha: float, chunk: int = 256):
    """G_c(k) of eq. (3) from the mean power per Fourier mode of `normalizer.apply(ds)`."""
    height, width = ds.sizes[dims.y], ds.sizes[dims.x]
    shell = shell_index(height, width).ravel()
    modes = shell_mode_counts(height, width)
    power = np.zeros((len(normalizer.variables), len(modes)))
    n = ds.sizes[dims.sample]
    for start in range(0, n, chunk):
        part = ds.isel({dims.sample: slice(start, start + chunk)})
        y = normalizer.apply(np.stack([np.asarray(part[v].values, dtype=np.float64) for v in normalizer.variables], 1))
        mode_power = (np.abs(np.fft.fft2(y)) ** 2).sum(axis=0).reshape(len(normalizer.variables), -1)
        power += np.stack([np.bincount(shell, weights=p, minlength=len(modes)) for p in mode_power])
    per_mode = power / modes
    gain = np.ones_like(per_mode)
    for c, p in enumerate(per_mode):
        reference = p[1:].max()
        if not reference > 0:
            raise UserError(f"variable {normalizer.variables[c]!r} has no spatial fluctuations to whiten")
        gain[c, 1:] = np.maximum(p[1:] / reference, 1e-6) ** (-alpha / 2)
        # keep the fluctuation variance: sum_k power(k) G(k)^2 = sum_k power(k), k >= 1
        gain[c, 1:] *= np.sqrt(power[c, 1:].sum() / (power[c, 1:] * gain[c, 1:] ** 2).sum())
    return tuple(tuple(float(v) for v in g) for g in gain)
