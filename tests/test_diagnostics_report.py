"""The diagnostics report: `compare`, `write_report` and `sciscore diagnose` end to end.

The "two independent simulated sets" are Gaussian random fields with a prescribed spectrum
E(k) ∝ k^-3 and a random spatial mean per sample (std MEAN_STD), drawn with different seeds.
Thresholds on the independent sets are a few sampling standard errors for N_SAMPLES samples.
"""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pytest
import xarray as xr

from sciscore.cli import main
from sciscore.diagnostics import compare, summary_figures, write_report

N_SAMPLES, SIZE, MEAN_STD = 96, 32, 0.5


def gaussian_random_fields(n: int, size: int = SIZE, seed: int = 0, mean_shift: float = 0.0,
                           name: str = "q") -> xr.Dataset:
    """n periodic Gaussian fields, amplitude ∝ |k|^-2 (so E(k) ∝ k^-3), unit fluctuation std,
    plus a N(mean_shift, MEAN_STD²) spatial mean per sample; float32 (sample, y, x)."""
    rng = np.random.default_rng(seed)
    k = np.fft.fftfreq(size, d=1.0 / size)
    magnitude = np.hypot(*np.meshgrid(k, k, indexing="ij"))
    amplitude = np.zeros_like(magnitude)
    amplitude[magnitude > 0] = magnitude[magnitude > 0] ** -2.0
    white = rng.normal(size=(n, size, size))
    fluctuation = np.fft.ifft2(np.fft.fft2(white) * amplitude).real
    fluctuation /= fluctuation.std(axis=(1, 2)).mean()
    means = rng.normal(mean_shift, MEAN_STD, size=(n, 1, 1))
    coords = {"y": 2 * np.pi * np.arange(size) / size, "x": 2 * np.pi * np.arange(size) / size}
    return xr.Dataset(
        {name: (("sample", "y", "x"), (fluctuation + means).astype("float32"),
                {"units": "1", "long_name": "supersaturation"})},
        coords=coords,
    )


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sets")
    out = {
        "reference": gaussian_random_fields(N_SAMPLES, seed=1),
        "independent": gaussian_random_fields(N_SAMPLES, seed=2),
        "shifted": gaussian_random_fields(N_SAMPLES, seed=3, mean_shift=2 * MEAN_STD),
    }
    paths = {}
    for key, ds in out.items():
        paths[key] = folder / f"{key}.nc"
        ds.to_netcdf(paths[key])
    return out, paths


@pytest.fixture(scope="module")
def independent(sets):
    data, _ = sets
    return compare(data["reference"], data["independent"], progress=False)


def test_independent_sets_show_small_distances(independent):
    figures = summary_figures(independent, "q")
    assert figures["color_shift_flag"] == 0
    assert figures["color_shift_score"] < 0.3          # sampling noise ≈ 0.15 for 96 vs 96
    assert figures["color_shift_pvalue"] > 0.01
    assert abs(figures["fluctuation_std_ratio"] - 1) < 0.05
    assert figures["max_spectral_ratio"] < 1.3
    assert figures["ks_pixels_upper_bound"] < 0.05
    assert figures["w1_pixels_over_reference_std"] < 0.1
    assert figures["w1_skewness"] < 0.1 and figures["w1_excess_kurtosis"] < 0.2
    assert np.all(np.abs(independent["q_quantile_error_pixels_normalized"]) < 0.15)


def test_shifted_means_are_flagged(sets):
    data, _ = sets
    shifted = compare(data["reference"], data["shifted"], progress=False)
    figures = summary_figures(shifted, "q")
    assert figures["color_shift_flag"] == 1
    # the shift is 2 stds of the means: W1 ≈ 1.0 ± 0.07 (difference of two means of 96), and the
    # reference std of the means is estimated to ± 7 %, so the score ≈ 2 within ± 0.4 at 2σ
    assert 1.4 < figures["color_shift_score"] < 2.8
    assert figures["color_shift_score"] == pytest.approx(
        figures["w1_spatial_means"] / float(data["reference"]["q"].mean(("y", "x")).std()), rel=1e-6)
    assert figures["color_shift_pvalue"] < 0.01
    # the spatial structure is unchanged: a color shift is an error in the mean only
    assert abs(figures["fluctuation_std_ratio"] - 1) < 0.05 and figures["max_spectral_ratio"] < 1.3


def test_compare_does_not_depend_on_chunking(sets, independent):
    data, _ = sets
    chunked = compare(data["reference"].chunk({"sample": 7}), data["independent"].chunk({"sample": 13}),
                      progress=False)
    for name in ("q_spatial_mean_reference", "q_variance_generated", "q_spectrum_reference",
                 "q_kappa4_generated", "q_color_shift_score", "q_w1_pixels"):
        xr.testing.assert_allclose(chunked[name], independent[name], rtol=1e-12)
    np.testing.assert_array_equal(chunked["q_pixel_counts_generated"], independent["q_pixel_counts_generated"])


def test_constant_mean_variable_uses_fluctuation_normalizer():
    reference = gaussian_random_fields(40, size=16, seed=4, name="vorticity")
    reference["vorticity"] -= reference["vorticity"].mean(("y", "x"))  # zero mean, like periodic vorticity
    samples = reference.copy(deep=True)
    samples["vorticity"] += 0.1
    result = compare(reference, samples, progress=False)
    score = result["vorticity_color_shift_score"]
    assert score.attrs["color_shift_normalizer"] == "reference fluctuation std"
    np.testing.assert_allclose(float(score), 0.1 / float(result["vorticity_fluctuation_std_reference"]), rtol=1e-6)
    assert np.isnan(float(result["vorticity_mean_std_correlation_reference"]))


def test_report_files_exist_and_round_trip(sets, independent, tmp_path):
    data, _ = sets
    out = write_report(independent, data["reference"], data["independent"], tmp_path / "report")
    for figure in ("samples", "spatial_means", "spectra", "cumulant_qq", "pixel_pdf"):
        path = out / f"q_{figure}.png"
        assert path.stat().st_size > 5000
        pixels = matplotlib.image.imread(path)
        assert pixels.shape[0] > 100 and pixels.std() > 0.01  # something is drawn
    summary = (out / "summary.md").read_text()
    assert "## q" in summary and "no color shift" in summary and "q_spectra.png" in summary
    with xr.open_dataset(out / "diagnostics.nc") as written:
        assert written.attrs["Conventions"] == "CF-1.10"
        for name in ("q_spectrum_reference", "q_color_shift_score", "q_pixel_counts_reference",
                     "q_quantile_error_pixels"):
            xr.testing.assert_allclose(written[name], independent[name])
            assert "long_name" in written[name].attrs
    assert not list(out.glob(".sciscore-report-*"))  # no staging folder left


def test_cli_writes_report_and_flags_shift(sets, tmp_path, capsys):
    _, paths = sets
    out = tmp_path / "report"
    argv = ["diagnose", "--reference", str(paths["reference"]), "--samples", str(paths["shifted"]),
            "-o", str(out), "--quiet", "--bins", "200"]
    assert main(argv) == 0
    assert "**COLOR SHIFT**" in (out / "summary.md").read_text()
    with xr.open_dataset(out / "diagnostics.nc") as written:
        assert int(written["q_color_shift_flag"]) == 1 and written.sizes["q_pixel_bin"] == 200
    assert main(argv) == 2  # an existing report is not replaced silently
    assert "--overwrite" in capsys.readouterr().err
    assert main(argv + ["--overwrite"]) == 0


@pytest.mark.parametrize(("case", "message"), [
    ("missing_variable", "variable 'nope' not found"),
    ("mismatched_grid", "grid"),
    ("not_netcdf", "cannot be read"),
    ("unwritable", "not a directory"),
])
def test_cli_bad_input_is_one_line_user_error(sets, tmp_path, capsys, case, message):
    _, paths = sets
    reference, samples, out, extra = str(paths["reference"]), str(paths["independent"]), tmp_path / "r", []
    if case == "missing_variable":
        extra = ["--variable", "nope"]
    elif case == "mismatched_grid":
        samples = str(tmp_path / "small.nc")
        gaussian_random_fields(4, size=16).to_netcdf(samples)
    elif case == "not_netcdf":
        samples = str(tmp_path / "text.nc")
        (tmp_path / "text.nc").write_text("not a netcdf file")
    elif case == "unwritable":
        (tmp_path / "file").write_text("")
        out = tmp_path / "file" / "report"
    code = main(["diagnose", "--reference", reference, "--samples", samples, "-o", str(out), "-q", *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.slow
def test_two_variable_report_is_cf_compliant(tmp_path):
    import os

    from compliance_checker.runner import CheckSuite, ComplianceChecker

    def two_variables(seed):
        ds = gaussian_random_fields(12, size=16, seed=seed)
        vorticity = gaussian_random_fields(12, size=16, seed=seed + 100, name="vorticity")["vorticity"]
        ds["vorticity"] = vorticity - vorticity.mean(("y", "x"))
        ds["vorticity"].attrs = {"units": "s-1", "long_name": "relative vorticity"}
        return ds

    reference, samples = two_variables(1), two_variables(2)
    out = write_report(compare(reference, samples, progress=False), reference, samples, tmp_path / "report")
    assert {p.name for p in out.glob("vorticity_*.png")} >= {"vorticity_spectra.png", "vorticity_samples.png"}
    with xr.open_dataset(out / "diagnostics.nc") as written:
        assert written["vorticity_spectrum_mean_reference"].attrs["units"] == "(s-1)^2"
        assert written["q_spectrum_mean_reference"].attrs["units"] == "1"
    CheckSuite.load_all_available_checkers()
    passed, errors = ComplianceChecker.run_checker(
        str(out / "diagnostics.nc"), ["cf:1.10"], verbose=0, criteria="strict",
        output_filename=os.devnull, output_format="text")
    assert not errors
    assert passed


def test_non_finite_values_are_a_user_error():
    from sciscore.errors import UserError

    reference = gaussian_random_fields(4, size=8, seed=5)
    samples = reference.copy(deep=True)
    samples["q"][1, 2, 3] = np.nan
    with pytest.raises(UserError, match="in the samples has 1 non-finite value"):
        compare(reference, samples, progress=False)


def test_time_lat_lon_dims_and_plain_axes_without_cartopy(tmp_path):
    ds = gaussian_random_fields(6, size=16, seed=6).rename({"sample": "time", "y": "lat", "x": "lon"})
    ds = ds.assign_coords(lat=np.linspace(-60, 60, 16), lon=np.linspace(0, 337.5, 16))
    result = compare(ds, ds, progress=False)
    assert float(result["q_w1_spatial_means"]) == 0.0 and float(result["q_ks_pixels"]) == 0.0
    assert result.sizes["reference_sample"] == 6
    out = write_report(result, ds, ds, tmp_path / "r")
    assert (out / "q_samples.png").stat().st_size > 5000  # a map with cartopy, plain axes without


def test_lat_lon_sample_grid_is_a_map_with_cartopy_even_without_coastline_data(tmp_path):
    pytest.importorskip("cartopy")
    from cartopy.mpl.geoaxes import GeoAxes

    from sciscore.diagnostics import plots

    ds = gaussian_random_fields(2, size=16, seed=7).rename({"y": "lat", "x": "lon"})
    ds = ds.assign_coords(lat=np.linspace(-60, 60, 16), lon=np.linspace(-180, 157.5, 16))
    figure = plots.sample_grid(ds["q"], ds["q"])
    assert isinstance(figure.axes[0], GeoAxes)
    plots.save(figure, tmp_path / "map.png")  # offline: no coastline download, no failure
    assert (tmp_path / "map.png").stat().st_size > 5000


def test_condensation_rate_of_supersaturation_is_compared():
    reference = gaussian_random_fields(8, size=16, seed=8, name="supersaturation")
    reference.attrs["param_tau_c"] = 0.1
    samples = reference.copy(deep=True)
    samples["supersaturation"] = 2 * reference["supersaturation"]  # s⁺ doubles, so does s⁺/τc
    result = compare(reference, samples, progress=False)
    figures = summary_figures(result, "supersaturation")
    assert figures["condensation_rate_ratio"] == pytest.approx(2.0, rel=1e-12)
    positive = reference["supersaturation"].clip(min=0).astype("float64").mean(("y", "x")) / 0.1
    np.testing.assert_allclose(result["supersaturation_condensation_rate_reference"], positive, rtol=1e-12)
    assert figures["w1_condensation_rate"] == pytest.approx(float(positive.mean()), rel=1e-12)  # W1(a, 2a) = mean(a), a ≥ 0
    assert "q_condensation_rate_reference" not in compare(gaussian_random_fields(4, size=8), gaussian_random_fields(4, size=8, seed=1), progress=False)


def test_condensation_rate_follows_the_condensation_timescale_attribute():
    """A supersaturation field under another name is found by its attribute, with its own tau_c."""
    reference = gaussian_random_fields(8, size=16, seed=8, name="s_700hPa")
    reference["s_700hPa"].attrs["condensation_timescale"] = 0.5
    reference.attrs["param_tau_c"] = 0.1  # the variable's own attribute wins
    result = compare(reference, reference.copy(deep=True), progress=False)
    positive = reference["s_700hPa"].clip(min=0).astype("float64").mean(("y", "x")) / 0.5
    np.testing.assert_allclose(result["s_700hPa_condensation_rate_reference"], positive, rtol=1e-12)


@pytest.fixture(scope="module")
def generated_with_a_late_nan(tmp_path_factory):
    """A file written by `sciscore generate` (the tiny model of test_generate) whose last sample
    holds a NaN, and a reference on its grid."""
    import netCDF4

    from conftest import make_fields
    from sciscore.train.trainer import train
    from test_generate import TINY

    tmp_path = tmp_path_factory.mktemp("late_nan")
    run = tmp_path / "run"
    train(TINY, run, dataset=make_fields(n=16, ny=8, nx=8))
    samples = tmp_path / "generated.nc"
    assert main(["generate", "--model", str(run), "-n", "12", "--solver", "ode-heun", "--steps", "2",
                 "--device", "cpu", "-o", str(samples), "--quiet"]) == 0
    with netCDF4.Dataset(samples, "a") as nc:
        nc["vorticity"][11, 7, 7] = np.nan
    reference = tmp_path / "reference.nc"
    make_fields(n=16, ny=8, nx=8).to_netcdf(reference)
    return reference, samples


def test_cli_nan_in_the_last_sample_is_one_line_without_a_progress_bar(generated_with_a_late_nan, tmp_path,
                                                                       capfd, monkeypatch):
    """The NaN is found by the streaming pass, after its progress bar started (shown at once here):
    in a log file or a pipe no bar is written, so stderr is the error line alone."""
    from cli_helpers import refuse
    from sciscore.diagnostics import _progress

    monkeypatch.setattr(_progress, "BAR_DELAY_SECONDS", 0)
    reference, samples = generated_with_a_late_nan
    line = refuse("diagnose", ["--reference", str(reference), "--samples", str(samples), "--variable", "vorticity",
                               "-o", str(tmp_path / "report")], capfd, watched=[tmp_path])
    assert line == ("sciscore diagnose: error: variable 'vorticity' in the samples has 1 non-finite value(s) "
                    "(NaN or inf); remove or fill those samples")


def _terminal_screen(text: str) -> list:
    """The lines a terminal shows after printing `text`: a carriage return moves to the line's
    start and later characters overwrite earlier ones (a progress bar erases itself so)."""
    lines, line, column = [], [], 0
    for char in text:
        if char == "\n":
            lines.append("".join(line).rstrip())
            line, column = [], 0
        elif char == "\r":
            column = 0
        else:
            line[column:column + 1] = [char]
            column += 1
    return lines + (["".join(line).rstrip()] if "".join(line).strip() else [])


def test_on_a_terminal_the_bar_is_shown_then_erased_before_the_error(generated_with_a_late_nan, tmp_path,
                                                                     monkeypatch):
    import fcntl
    import io
    import os
    import pty
    import struct
    import sys
    import termios
    import threading

    from sciscore.diagnostics import _progress

    monkeypatch.setattr(_progress, "BAR_DELAY_SECONDS", 0)
    reference, samples = generated_with_a_late_nan
    controller, terminal = pty.openpty()
    # a terminal 24 lines by 120 columns (a new pty has 0 columns: tqdm would cut the bar to nothing)
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    received = []

    def read():  # drain the terminal while the command runs (a full pty buffer would block it)
        while True:
            try:
                data = os.read(controller, 4096)
            except OSError:  # the terminal side is closed
                return
            if not data:
                return
            received.append(data)

    reader = threading.Thread(target=read)
    reader.start()
    stderr = io.TextIOWrapper(os.fdopen(terminal, "wb", buffering=0), write_through=True)
    assert stderr.isatty()
    monkeypatch.setattr(sys, "stderr", stderr)
    status = main(["diagnose", "--reference", str(reference), "--samples", str(samples), "--variable", "vorticity",
                   "-o", str(tmp_path / "report")])
    monkeypatch.undo()
    stderr.close()
    reader.join(timeout=10)
    os.close(controller)
    shown = b"".join(received).decode()
    assert status == 2
    assert "vorticity: moments and spectra" in shown  # the bar was drawn ...
    assert _terminal_screen(shown) == [  # ... and erased: the error line is all the terminal shows
        "sciscore diagnose: error: variable 'vorticity' in the samples has 1 non-finite value(s) (NaN or inf); "
        "remove or fill those samples"]
