"""Diagnostics on fields from `sciscore.simulate` (moist 2D turbulence).

The simulator's `isotropic_spectrum` uses the same shell convention (sum over k − ½ ≤ |k| < k + ½,
normalised so the shells sum to the mean square), so the two must agree to round-off on every
shell k ≥ 1 (shell 0 is the spatial mean, which the diagnostics remove).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sciscore.diagnostics import compare, distances, power_spectrum, summary_figures
from sciscore.simulate import Grid, Params, Problem, advance, isotropic_spectrum, stepforward, to_xarray


def test_power_spectrum_matches_the_simulator_spectrum():
    problem = Problem(Grid(16, dtype=torch.float64), Params.reference(16), members=3, seed=0, dt=1e-2)
    stepforward(problem, 5)
    snapshot = to_xarray(problem)
    for channel, name in ((0, "vorticity"), (1, "supersaturation")):
        _, expected = isotropic_spectrum(problem, problem.sol[:, channel])
        mine = power_spectrum(snapshot[name])
        assert mine.sizes["wavenumber"] == expected.shape[1]
        np.testing.assert_allclose(mine.values[:, 1:], expected.numpy()[:, 1:], rtol=1e-10, atol=1e-16)


@pytest.mark.slow
def test_report_on_two_independent_simulated_sets_and_a_shifted_one():
    # one ensemble, split in two halves: the members' forcing noise is independent, so the halves
    # are independent draws of the state at the same time (a transient, but one distribution)
    problem = Problem(Grid(32, dtype=torch.float32), Params.reference(32), members=32, seed=11)
    advance(problem, 1.0)
    fields = to_xarray(problem)
    first, second = fields.isel(sample=slice(0, 16)), fields.isel(sample=slice(16, 32))
    independent = compare(first, second, progress=False)
    for name in ("supersaturation", "vorticity"):
        figures = summary_figures(independent, name)
        assert figures["color_shift_flag"] == 0, name
        assert figures["ks_pixels"] < 0.1, name
        # the histogram KS brackets the exact KS of the pixels (small enough here to sort)
        exact = distances.ks_statistic(first[name].values, second[name].values)
        assert figures["ks_pixels"] <= exact <= figures["ks_pixels_upper_bound"], name
    vorticity = summary_figures(independent, "vorticity")
    # the periodic vorticity has zero mean exactly: the score falls back to the fluctuation std
    assert independent["vorticity_color_shift_score"].attrs["color_shift_normalizer"] == "reference fluctuation std"
    assert vorticity["color_shift_score"] < 1e-6

    shifted = second.copy(deep=True)
    means = first["supersaturation"].mean(("y", "x"))
    shifted["supersaturation"] = second["supersaturation"] + 3 * float(means.std())
    flagged = summary_figures(compare(first, shifted, ["supersaturation"], progress=False), "supersaturation")
    assert flagged["color_shift_flag"] == 1 and flagged["color_shift_score"] > 1.5
