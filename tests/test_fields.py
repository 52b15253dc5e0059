"""Data layer: opening, validation, CF writing, normalizers, torch dataset."""

import json
import os
import subprocess
import sys

import dask.array
import numpy as np
import pytest
import torch
import xarray as xr

from conftest import make_fields
from sciscore.errors import UserError
from sciscore.fields import (
    Augmentation, ChunkShuffleSampler, FieldDataset, Normalizer, check_finite, field_dims,
    fit_normalizer, open_fields, train_validation_split, write_fields,
)


@pytest.fixture
def nc_file(tmp_path, fields):
    return write_fields(fields, tmp_path / "fields.nc")


# --- opening -------------------------------------------------------------------------------

def test_open_is_lazy_and_chunked_along_samples(nc_file):
    ds = open_fields(nc_file, chunk_samples=5)
    assert isinstance(ds["temperature"].data, dask.array.Array)
    assert ds["temperature"].chunks == ((5, 5, 2), (8,), (16,))
    assert field_dims(ds).all == ("sample", "y", "x")


def test_open_does_not_read_data(nc_file):
    ds = open_fields(nc_file)
    for name in ds.data_vars:
        assert not ds[name].variable._in_memory
    # the values arrive only when asked for
    assert ds["vorticity"].load().variable._in_memory


def test_open_glob_concatenates(tmp_path):
    for i in range(3):
        write_fields(make_fields(n=4, seed=i), tmp_path / f"part{i}.nc")
    ds = open_fields(str(tmp_path / "part*.nc"))
    assert ds.sizes["sample"] == 12
    np.testing.assert_allclose(ds["vorticity"].values[4:8], make_fields(n=4, seed=1)["vorticity"].values, rtol=1e-6)


def test_open_zarr(tmp_path, fields):
    fields.to_zarr(tmp_path / "f.zarr")
    ds = open_fields(tmp_path / "f.zarr", "vorticity")
    assert list(ds.data_vars) == ["vorticity"]


def test_lat_lon_time_dims_recognised(tmp_path):
    ds = make_fields(sample_dim="time", y="lat", x="lon")
    path = write_fields(ds, tmp_path / "ll.nc")
    dims = field_dims(open_fields(path))
    assert (dims.sample, dims.y, dims.x) == ("time", "lat", "lon")


# --- bad input -----------------------------------------------------------------------------

def test_missing_variable_lists_available(nc_file):
    with pytest.raises(UserError, match=r"'humidity' not found.*available: temperature, vorticity"):
        open_fields(nc_file, ["humidity"])


def test_not_2d_in_space(tmp_path):
    ds = xr.Dataset({"a": (("sample", "x"), np.zeros((3, 4)))})
    ds.to_netcdf(tmp_path / "line.nc")
    with pytest.raises(UserError, match="spatial dimensions"):
        open_fields(tmp_path / "line.nc")


def test_extra_dimension_refused(tmp_path):
    ds = xr.Dataset({"a": (("sample", "level", "y", "x"), np.zeros((3, 2, 4, 4)))})
    ds.to_netcdf(tmp_path / "levels.nc")
    with pytest.raises(UserError, match=r"expected \(sample, y, x\)"):
        open_fields(tmp_path / "levels.nc", sample_dim="sample")


def test_non_finite_reports_count_and_first_location(tmp_path, fields):
    fields["vorticity"][7, 2, 3] = np.nan
    fields["vorticity"][9, 0, 0] = np.inf
    path = write_fields(fields, tmp_path / "nan.nc")
    ds = open_fields(path, chunk_samples=3)
    with pytest.raises(UserError, match=r"'vorticity' has 2 non-finite.*sample=7, y=2, x=3"):
        check_finite(ds)
    with pytest.raises(UserError, match="non-finite"):
        open_fields(path, check_finite_values=True)


def test_mismatched_shapes_across_files(tmp_path):
    write_fields(make_fields(nx=16), tmp_path / "a.nc")
    write_fields(make_fields(nx=8), tmp_path / "b.nc")
    with pytest.raises(UserError, match="spatial shape"):
        open_fields([tmp_path / "a.nc", tmp_path / "b.nc"])


def test_empty_dataset(tmp_path, fields):
    fields.isel(sample=slice(0, 0)).to_netcdf(tmp_path / "empty.nc")
    with pytest.raises(UserError, match="empty"):
        open_fields(tmp_path / "empty.nc")


def test_not_netcdf(tmp_path):
    path = tmp_path / "notes.nc"
    path.write_text("this is not a NetCDF file\n")
    with pytest.raises(UserError, match="cannot be read as a NetCDF file"):
        open_fields(path)


def test_missing_file_and_empty_glob(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        open_fields(tmp_path / "absent.nc")
    with pytest.raises(UserError, match="no file matches"):
        open_fields(str(tmp_path / "*.nc"))


# --- writing -------------------------------------------------------------------------------

def test_written_file_has_cf_attributes(nc_file):
    ds = xr.open_dataset(nc_file)
    assert ds.attrs["Conventions"] == "CF-1.10"
    assert {"title", "source", "history"} <= set(ds.attrs)
    assert ds["temperature"].attrs["units"] == "K"
    assert ds["vorticity"].attrs["long_name"] == "relative vorticity"
    assert ds["temperature"].dtype == np.float32
    assert ds["temperature"].encoding["zlib"]
    assert ds["temperature"].encoding["chunksizes"][1:] == (8, 16)
    assert "_FillValue" not in ds["x"].encoding or np.isnan(ds["x"].encoding.get("_FillValue", np.nan))


def test_cf_compliance_checker_finds_no_errors(nc_file):
    from compliance_checker.runner import CheckSuite, ComplianceChecker

    CheckSuite.load_all_available_checkers()
    passed, errors = ComplianceChecker.run_checker(
        str(nc_file), ["cf:1.10"], verbose=0, criteria="strict", output_filename=os.devnull, output_format="text")
    assert not errors
    assert passed


def test_no_silent_overwrite(nc_file, fields):
    with pytest.raises(UserError, match="already exists; pass --overwrite"):
        write_fields(fields, nc_file)
    write_fields(fields.isel(sample=slice(0, 2)), nc_file, overwrite=True)
    assert xr.open_dataset(nc_file).sizes["sample"] == 2


def test_unwritable_path(tmp_path, fields):
    with pytest.raises(UserError, match="does not exist"):
        write_fields(fields, tmp_path / "no" / "such" / "dir.nc")


def test_failed_write_leaves_no_file(tmp_path, fields):
    """A write that fails half way (here: the third chunk cannot be computed) leaves nothing."""
    target = tmp_path / "out.nc"

    def explode(block, block_info=None):
        if block_info[0]["chunk-location"][0] == 2:
            raise RuntimeError("disk gone")
        return block

    lazy = fields.chunk({"sample": 4})
    lazy["vorticity"].data = lazy["vorticity"].data.map_blocks(explode, dtype=float)
    with pytest.raises(RuntimeError, match="disk gone"):
        write_fields(lazy, target)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


# --- normalizers ---------------------------------------------------------------------------

def test_positive_stretch_is_exactly_inverted_and_widens_the_positive_part(fields):
    variables = ["temperature", "vorticity"]
    plain = fit_normalizer(fields, variables, "standard")
    stretched = fit_normalizer(fields, variables, "standard", positive_stretch={"vorticity": 10.0})
    assert stretched.positive_stretch == (1.0, 10.0) and plain.positive_stretch is None
    x = fields[variables].to_array("channel").transpose("sample", "channel", ...).values.astype(np.float64)
    y = stretched.apply(x)
    np.testing.assert_allclose(stretched.invert(y), x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y[:, 0], plain.apply(x)[:, 0], rtol=1e-12)  # other channels untouched
    # eq. (2) by hand: stretch, then the standard z-score of the stretched data
    s = x[:, 1] + 9.0 * np.maximum(x[:, 1], 0)
    np.testing.assert_allclose(y[:, 1], (s - s.mean()) / s.std(), rtol=1e-9, atol=1e-12)
    t = torch.as_tensor(x)
    torch.testing.assert_close(stretched.invert(stretched.apply(t)), t, rtol=1e-12, atol=1e-12)
    # the record round-trips; a record without the key (older checkpoints) has no stretch
    assert Normalizer.from_dict(stretched.to_dict()) == stretched
    assert "positive_stretch" not in plain.to_dict() and Normalizer.from_dict(plain.to_dict()) == plain


@pytest.mark.parametrize("stretch", [{"nope": 2.0}, {"vorticity": 0.0}, {"vorticity": "big"}, [2.0]])
def test_bad_positive_stretch_is_a_user_error(fields, stretch):
    with pytest.raises(UserError, match="positive_stretch"):
        fit_normalizer(fields, ["temperature", "vorticity"], "standard", positive_stretch=stretch)


def _power_law_fields(n_samples=6, size=16, slope=4.0, seed=0):
    """Fields whose every Fourier mode k != 0 has amplitude |k_shell|^(-slope/2) and a random phase
    (a real field: Hermitian symmetry), plus a random spatial mean: per-mode power p(k) = k^-slope exactly."""
    rng = np.random.default_rng(seed)
    k = np.fft.fftfreq(size, 1 / size)
    shell = np.rint(np.hypot(*np.meshgrid(k, k, indexing="ij")))
    amplitude = np.where(shell > 0, np.maximum(shell, 1) ** (-slope / 2), 0.0)
    noise = rng.standard_normal((n_samples, 2, size, size))
    phase = np.fft.fft2(noise) / np.maximum(np.abs(np.fft.fft2(noise)), 1e-300)
    x = np.fft.ifft2(amplitude * phase).real * size**2 + rng.standard_normal((n_samples, 2, 1, 1))
    return xr.Dataset({name: (("sample", "y", "x"), x[:, c]) for c, name in enumerate(["a", "b"])}), shell


def test_spectral_whitening_flattens_a_power_law_and_is_exactly_inverted():
    ds, shell = _power_law_fields()
    plain = fit_normalizer(ds, ["a", "b"], "standard")
    whitened = fit_normalizer(ds, ["a", "b"], "standard", spectral_whitening=1.0)
    half = fit_normalizer(ds, ["a", "b"], "standard", spectral_whitening=0.5)
    x = np.stack([ds["a"].values, ds["b"].values], axis=1)
    y, y_plain = whitened.apply(x), plain.apply(x)
    # G(0) = 1: the spatial means are those of the plain normalizer; the fluctuation variance is kept
    np.testing.assert_allclose(y.mean(axis=(-2, -1)), y_plain.mean(axis=(-2, -1)), rtol=1e-12, atol=1e-12)
    fluct = lambda v: v - v.mean(axis=(-2, -1), keepdims=True)  # noqa: E731
    np.testing.assert_allclose((fluct(y) ** 2).sum(), (fluct(y_plain) ** 2).sum(), rtol=1e-10)
    # alpha = 1 makes the power per mode the same in every shell k >= 1 (the input's is k^-4);
    # alpha = 1/2 leaves k^-2: the power falls by 2^2 from shell 1 to 2 and by 4^2 from 1 to 4
    def per_mode(v):
        power = (np.abs(np.fft.fft2(v)) ** 2).mean(axis=0)[0]
        return np.array([power[shell == k].mean() for k in range(1, int(shell.max()) + 1)])
    flat = per_mode(y)
    np.testing.assert_allclose(flat, flat[0], rtol=1e-10)
    sloped = per_mode(half.apply(x))
    np.testing.assert_allclose(sloped[[1, 3]] / sloped[0], [2.0**-2, 4.0**-2], rtol=1e-10)
    # exact inverse (numpy and torch), and the record round-trips through JSON
    np.testing.assert_allclose(whitened.invert(y), x, rtol=1e-12, atol=1e-12)
    t = torch.as_tensor(x)
    torch.testing.assert_close(whitened.apply(t), torch.as_tensor(y), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(whitened.invert(whitened.apply(t)), t, rtol=1e-12, atol=1e-12)
    assert Normalizer.from_dict(json.loads(json.dumps(whitened.to_dict()))) == whitened
    assert "whitening_gain" not in plain.to_dict()
    # the filter is radial: it commutes with periodic shifts and reflections (the augmentations)
    np.testing.assert_allclose(whitened.apply(np.roll(x, 3, axis=-1)), np.roll(y, 3, axis=-1), atol=1e-12)
    np.testing.assert_allclose(whitened.apply(x[..., ::-1]), y[..., ::-1], atol=1e-12)
    with pytest.raises(UserError, match="smaller grid"):
        whitened.apply(np.zeros((1, 2, 32, 32)))


@pytest.mark.parametrize("alpha", [-0.5, 1.5, "half", True])
def test_bad_spectral_whitening_is_a_user_error(fields, alpha):
    with pytest.raises(UserError, match="spectral_whitening"):
        fit_normalizer(fields, ["temperature", "vorticity"], "standard", spectral_whitening=alpha)


@pytest.mark.parametrize("method", ["standard", "minmax", "mean-spatial"])
def test_normalizer_round_trip(fields, method):
    variables = ["temperature", "vorticity"]
    normalizer = fit_normalizer(fields, variables, method)
    x = np.stack([fields[v].values for v in variables], axis=1).astype(np.float32)
    y = normalizer.apply(torch.from_numpy(x))
    back = normalizer.invert(y).numpy()
    scale = np.abs(x).max(axis=(0, 2, 3), keepdims=True)
    assert np.abs(back - x).max(axis=(0, 2, 3)).max() <= 8 * np.finfo(np.float32).eps * scale.max()
    np.testing.assert_allclose(back, x, rtol=2e-6, atol=1e-6 * scale.max())
    # serializations round-trip exactly
    assert Normalizer.from_dict(json.loads(json.dumps(normalizer.to_dict()))) == normalizer
    assert Normalizer.from_attrs(normalizer.to_attrs()) == normalizer


def test_normalizer_ranges(fields):
    x = np.stack([fields[v].values for v in ["temperature", "vorticity"]], axis=1)
    standard = fit_normalizer(fields, ["temperature", "vorticity"], "standard").apply(x)
    np.testing.assert_allclose(standard.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(standard.std(axis=(0, 2, 3)), 1, rtol=1e-12)
    minmax = fit_normalizer(fields, ["temperature", "vorticity"], "minmax").apply(x)
    np.testing.assert_allclose(minmax.min(axis=(0, 2, 3)), -1, atol=1e-12)
    np.testing.assert_allclose(minmax.max(axis=(0, 2, 3)), 1, atol=1e-12)


def test_mean_spatial_separates_mean_and_fluctuation(fields):
    normalizer = fit_normalizer(fields, ["temperature", "vorticity"], "mean-spatial")
    x = np.stack([fields[v].values for v in ["temperature", "vorticity"]], axis=1)
    y = normalizer.apply(x)
    means = y.mean(axis=(2, 3))
    np.testing.assert_allclose([means[:, 0].min(), means[:, 0].max()], [-1, 1], atol=1e-12)
    # vorticity's spatial mean is the same (0) in every sample: it stays 0 and the scale is 1
    assert normalizer.mean_scale[1] == 1.0
    np.testing.assert_allclose(means[:, 1], means[0, 1], atol=1e-12)
    assert np.abs(y - means[..., None, None]).max() == pytest.approx(1.0)


def test_normalizer_fitted_on_split_only(fields):
    train, _ = train_validation_split(12, 0.25, seed=3)
    normalizer = fit_normalizer(fields, ["temperature"], "standard", indices=train)
    assert normalizer.offset[0] == pytest.approx(float(fields["temperature"].isel(sample=train).mean()))


def test_constant_variable_is_refused(fields):
    fields["temperature"][:] = 1.0
    with pytest.raises(UserError, match="constant"):
        fit_normalizer(fields, ["temperature"])


# --- torch dataset -------------------------------------------------------------------------

def test_split_is_seeded_and_disjoint():
    a, b = train_validation_split(100, 0.2, seed=7)
    c, d = train_validation_split(100, 0.2, seed=7)
    assert (a == c).all() and (b == d).all()
    assert len(b) == 20 and set(a).isdisjoint(b) and len(set(a) | set(b)) == 100


def test_dataset_yields_normalized_samples(nc_file, fields):
    ds = open_fields(nc_file, chunk_samples=5)
    variables = ["temperature", "vorticity"]
    normalizer = fit_normalizer(ds, variables, "standard")
    dataset = FieldDataset(ds, variables, normalizer, indices=[1, 6, 11])
    x = dataset[1]
    assert x.shape == (2, 8, 16) and x.dtype == torch.float32
    expected = normalizer.apply(np.stack([fields[v].values[6] for v in variables])[None])[0]
    np.testing.assert_allclose(x.numpy(), expected, rtol=1e-5, atol=1e-5)
    assert len(dataset._cache) <= dataset.max_cached_chunks


def test_chunk_shuffle_sampler_reads_each_chunk_once(nc_file):
    ds = open_fields(nc_file, chunk_samples=4)
    dataset = FieldDataset(ds, ["vorticity"], max_cached_chunks=1)
    order = list(ChunkShuffleSampler(dataset, seed=1))
    assert sorted(order) == list(range(12))
    chunks = [dataset.chunk_of(i) for i in order]
    assert sum(1 for a, b in zip(chunks, chunks[1:]) if a != b) == 2


def test_augmentation_is_a_symmetry_with_pseudoscalar_sign(nc_file):
    ds = open_fields(nc_file)
    plain = FieldDataset(ds, ["temperature", "vorticity"])
    augmented = FieldDataset(ds, ["temperature", "vorticity"], augment=Augmentation(shifts=True, flips=True, seed=5))
    found_reflection = False
    for i in range(12):
        a, x = augmented[i], plain[i]
        # same multiset of values for the scalar, sign-flipped or not for the pseudoscalar
        np.testing.assert_allclose(np.sort(a[0].flatten()), np.sort(x[0].flatten()))
        for sign in (1, -1):
            if np.allclose(np.sort(a[1].flatten()), np.sort(sign * x[1].flatten())):
                found_reflection |= sign == -1
                break
        else:
            raise AssertionError("vorticity values changed beyond a sign")
    assert found_reflection
    assert torch.equal(augmented[3], augmented[3])  # reproducible


def test_x_flips_reflect_only_x_and_change_the_pseudoscalar_sign():
    x = torch.arange(2 * 4 * 6, dtype=torch.float32).reshape(2, 4, 6)
    sign = torch.tensor([1.0, -1.0])
    augmentation = Augmentation(flips="x", seed=0)
    seen = set()
    for k in range(16):
        out = augmentation(x, sign, torch.Generator().manual_seed(k))
        if torch.equal(out, x):
            seen.add("identity")
        else:
            torch.testing.assert_close(out, torch.flip(x, dims=(-1,)) * sign.view(-1, 1, 1), rtol=0, atol=0)
            seen.add("x")
    assert seen == {"identity", "x"}
    assert Augmentation(flips=True).flip_axes == ("x", "y") and Augmentation(flips="y").flip_axes == ("y",)
    with pytest.raises(UserError, match="flips must be"):
        Augmentation(flips="z")


def test_python_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "sciscore", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("sciscore ")


def test_pseudoscalars_come_from_the_parity_attribute_with_names_as_the_fallback(fields):
    from sciscore.fields import pseudoscalars_of
    from sciscore.train.config import DataConfig
    from sciscore.train.data import load_training_data

    ds = fields.copy()
    assert pseudoscalars_of(ds, ["temperature", "vorticity"]) == ["vorticity"]  # no attribute: by name
    ds["temperature"].attrs["parity"] = "pseudoscalar"
    ds["vorticity"].attrs["parity"] = "scalar"
    assert pseudoscalars_of(ds, ["temperature", "vorticity"]) == ["temperature"]
    data = load_training_data(DataConfig(variables=["temperature", "vorticity"], flips=True), dataset=ds)
    assert data.sign_on_reflection.tolist() == [-1.0, 1.0]
    data = load_training_data(DataConfig(variables=["temperature", "vorticity"], flips=True,
                                         pseudoscalars=["vorticity"]), dataset=ds)
    assert data.sign_on_reflection.tolist() == [1.0, -1.0]
    with pytest.raises(UserError, match="data.pseudoscalars names 'omega'"):
        load_training_data(DataConfig(variables=["temperature"], pseudoscalars=["omega"]), dataset=ds)


def test_a_killed_writers_temporaries_are_removed_by_the_next_write(tmp_path):
    """SIGKILL skips every clean-up, so the hidden ``.part`` file (or zarr directory) of a killed
    writer stays; the next write of the same path removes it — but never a live process's or
    another host's."""
    import signal
    import socket

    from sciscore.fields.io import temporary_directory_name, temporary_file

    target = tmp_path / "out.nc"
    script = ("import sys, time; from pathlib import Path; from sciscore.fields.io import temporary_file, "
              "temporary_directory_name\n"
              f"f = temporary_file(Path({str(target)!r})); d = temporary_directory_name(Path({str(target)!r}))\n"
              "d.mkdir(); (d / 'chunk').write_bytes(b'x' * 1000); Path(f).write_bytes(b'y' * 1000)\n"
              "print(f, d, flush=True); time.sleep(60)")
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    killed_file, killed_dir = process.stdout.readline().split()
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL
    process.stdout.close()
    assert os.path.isfile(killed_file) and os.path.isdir(killed_dir)
    live = temporary_file(target)                                   # this process: alive
    foreign = tmp_path / f".out.nc.not-{socket.gethostname()}.1.abc.part"  # another host's writer
    foreign.write_bytes(b"z")
    write_fields(make_fields(n=2), target)
    hidden = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))
    assert hidden == sorted([os.path.basename(live), foreign.name])
    assert not os.path.exists(killed_file) and not os.path.exists(killed_dir)
    assert xr.open_dataset(target).sizes["sample"] == 2
    assert temporary_directory_name(target).name.startswith(f".out.nc.{socket.gethostname()}.{os.getpid()}.")
