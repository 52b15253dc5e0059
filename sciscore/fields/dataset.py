"""A torch dataset over lazily opened fields: (C, H, W) float32 tensors with bounded memory."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
import xarray as xr

from sciscore.errors import UserError
from sciscore.fields.dims import FieldDims, field_dims
from sciscore.fields.normalize import Normalizer

PARITY = "parity"                  # variable attribute: "pseudoscalar" changes sign under a reflection
DEFAULT_PSEUDOSCALARS = ("vorticity",)  # taken as pseudoscalars when a variable has no `parity` attribute


def pseudoscalars_of(ds: xr.Dataset, variables: Sequence[str]) -> list[str]:
    """The variables of `ds` that change sign under a reflection: those with the attribute
    parity = "pseudoscalar" (`sciscore simulate` writes it on vorticity), and, for variables with no
    `parity` attribute, those named in DEFAULT_PSEUDOSCALARS."""
    out = []
    for v in variables:
        parity = ds[v].attrs.get(PARITY)
        if parity == "pseudoscalar" or (parity is None and v in DEFAULT_PSEUDOSCALARS):
            out.append(v)
    return out


def reflection_signs(variables: Sequence[str], pseudoscalars: Sequence[str] = DEFAULT_PSEUDOSCALARS) -> torch.Tensor:
    """(C,) factors a reflection applies to each variable: -1 for pseudoscalars, else +1."""
    return torch.tensor([-1.0 if v in pseudoscalars else 1.0 for v in variables], dtype=torch.float32)


def train_validation_split(n: int, validation_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split of `range(n)` into sorted train and validation indices."""
    if not 0 <= validation_fraction < 1:
        raise UserError(f"validation fraction must be in [0, 1), got {validation_fraction}")
    permutation = np.random.default_rng(seed).permutation(n)
    n_validation = int(round(validation_fraction * n))
    if validation_fraction > 0 and n_validation == 0 and n > 1:
        n_validation = 1
    if n - n_validation < 1:
        raise UserError(f"{n} samples leave none for training with validation fraction {validation_fraction}")
    return np.sort(permutation[n_validation:]), np.sort(permutation[:n_validation])


@dataclass(frozen=True)
class Augmentation:
    """Random symmetry operations for doubly periodic fields (all off by default).

    shifts: circular shifts in y and x; flips: reflections, True for both x -> -x and y -> -y, or
    "x" / "y" for one axis; rotations: multiples of 90 degrees (square fields only). A pseudoscalar
    channel (vorticity) changes sign under a reflection. Only enable what is a symmetry of the
    physics: a mean gradient (supersaturation's gamma0 along y) breaks y-reflections and rotations,
    while x -> -x with vorticity -> -vorticity is exact (tests/test_simulate_symmetry.py).
    """

    shifts: bool = False
    flips: bool | str = False
    rotations: bool = False
    seed: int = 0

    def __post_init__(self):
        if self.flips not in (False, True, "x", "y"):
            raise UserError(f"flips must be true, false, 'x' or 'y', got {self.flips!r}")

    @property
    def active(self) -> bool:
        return bool(self.shifts or self.flips or self.rotations)

    @property
    def flip_axes(self) -> tuple[str, ...]:
        """The reflected axes: ("x", "y"), ("x",), ("y",) or ()."""
        if self.flips is True:
            return ("x", "y")
        return (self.flips,) if self.flips else ()

    def __call__(self, x: torch.Tensor, sign_on_reflection: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Apply a random operation to x (C, H, W); sign_on_reflection (C,) is -1 for pseudoscalars."""
        draws = torch.randint(0, 1 << 30, (5,), generator=generator).tolist()
        if self.shifts:
            x = torch.roll(x, shifts=(draws[0] % x.shape[-2], draws[1] % x.shape[-1]), dims=(-2, -1))
        reflections = 0
        axes = self.flip_axes
        if "x" in axes and draws[2] % 2:
            x, reflections = torch.flip(x, dims=(-1,)), reflections + 1
        if "y" in axes and draws[3] % 2:
            x, reflections = torch.flip(x, dims=(-2,)), reflections + 1
        if self.rotations:
            if x.shape[-1] != x.shape[-2]:
                raise UserError(f"90-degree rotations need square fields, got {tuple(x.shape[-2:])}")
            x = torch.rot90(x, k=draws[4] % 4, dims=(-2, -1))
        if reflections % 2:
            x = x * sign_on_reflection.view(-1, 1, 1)
        return x


class FieldDataset(torch.utils.data.Dataset):
    """Samples of `variables` from a (lazy) dataset as normalized (C, H, W) float32 tensors.

    Data are read one sample-chunk at a time (the dataset's dask chunks) into a small LRU cache of
    `max_cached_chunks` chunks, so memory is bounded by chunk size, not file size. Pair it with
    `ChunkShuffleSampler` for random order without re-reading a chunk per sample. Augmentation
    draws come from a generator seeded by (augment.seed, epoch, sample index): reproducible and
    independent of batch size and worker count; call `set_epoch` once per epoch.
    """

    def __init__(
        self,
        ds: xr.Dataset,
        variables: Sequence[str],
        normalizer: Normalizer | None = None,
        indices: Sequence[int] | None = None,
        augment: Augmentation | None = None,
        dims: FieldDims | None = None,
        max_cached_chunks: int = 2,
    ):
        variables = [variables] if isinstance(variables, str) else list(variables)
        missing = [v for v in variables if v not in ds.data_vars]
        if missing:
            raise UserError(f"variable {missing} not found; available: {', '.join(map(str, ds.data_vars))}")
        if normalizer is not None and list(normalizer.variables) != variables:
            raise UserError(f"normalizer is for {list(normalizer.variables)}, not {variables}")
        self.dims = dims or field_dims(ds)
        self.ds = ds[variables].transpose(*self.dims.all)
        self.variables = variables
        self.normalizer = normalizer
        n = self.ds.sizes[self.dims.sample]
        self.indices = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= n):
            raise UserError(f"sample indices out of range for {n} samples")
        chunks = self.ds[variables[0]].chunks
        sizes = chunks[0] if chunks else (n,)
        self.chunk_starts = np.concatenate([[0], np.cumsum(sizes)])
        self.augment = augment if augment is not None and augment.active else None
        self.sign_on_reflection = reflection_signs(variables, pseudoscalars_of(ds, variables))
        self.epoch = 0
        self.max_cached_chunks = max_cached_chunks
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self.indices)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def chunk_of(self, position: int) -> int:
        """Index of the storage chunk holding item `position` of this dataset."""
        return int(np.searchsorted(self.chunk_starts, self.indices[position], side="right") - 1)

    def _load_chunk(self, chunk: int) -> np.ndarray:
        if chunk in self._cache:
            self._cache.move_to_end(chunk)
            return self._cache[chunk]
        start, stop = int(self.chunk_starts[chunk]), int(self.chunk_starts[chunk + 1])
        part = self.ds.isel({self.dims.sample: slice(start, stop)})
        # float32 throughout: float64 normalization doubled the cost of reading a chunk
        block = np.stack([np.asarray(part[v].values, dtype=np.float32) for v in self.variables], axis=1)
        if self.normalizer is not None:
            block = self.normalizer.apply(block)
        self._cache[chunk] = block
        while len(self._cache) > self.max_cached_chunks:
            self._cache.popitem(last=False)
        return block

    def __getitem__(self, position: int) -> torch.Tensor:
        index = int(self.indices[position])
        chunk = self.chunk_of(position)
        x = torch.from_numpy(self._load_chunk(chunk)[index - int(self.chunk_starts[chunk])].copy())
        if self.augment is not None:
            seed = np.random.SeedSequence([self.augment.seed, self.epoch, index]).generate_state(1, np.uint64)[0]
            generator = torch.Generator().manual_seed(int(seed) >> 1)
            x = self.augment(x, self.sign_on_reflection, generator)
        return x


class ChunkShuffleSampler(torch.utils.data.Sampler):
    """Random order that visits storage chunks in shuffled order and shuffles within each chunk.

    With `FieldDataset`, each chunk is read once per epoch. Seeded by (seed, epoch).
    """

    def __init__(self, dataset: FieldDataset, seed: int = 0):
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0
        chunk_ids = np.array([dataset.chunk_of(i) for i in range(len(dataset))])
        self.groups = [np.flatnonzero(chunk_ids == c) for c in np.unique(chunk_ids)]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng((self.seed, self.epoch))
        for group in rng.permutation(len(self.groups)):
            yield from rng.permutation(self.groups[group]).tolist()
