"""The simulator steps only the modes the 2/3 rule keeps (`Grid.kept_modes`): the view must cover
exactly those modes, and a step must leave every other mode zero and its input untouched."""

import pytest
import torch

from sciscore.simulate import Grid, Params, Problem, stepforward


@pytest.mark.parametrize("n", [8, 10, 12, 32, 48, 64, 66])
def test_kept_modes_view_covers_exactly_the_dealiased_modes(n):
    grid = Grid(n, dtype=torch.float64)
    index = torch.arange(n * (n // 2 + 1), dtype=torch.float64).reshape(grid.shape_spectral)
    covered = grid.kept_modes(index).flatten().long()
    assert covered.unique().numel() == covered.numel()  # no mode twice
    K = grid.kept_wavenumber
    extra_row = torch.zeros(grid.shape_spectral, dtype=torch.bool)
    extra_row[n - K - 1, : K + 1] = True  # ky = -(K+1): removed by the rule, zero in a dealiased array
    expected = (grid.dealias > 0) | extra_row
    mask = torch.zeros(n * (n // 2 + 1), dtype=torch.bool)
    mask[covered] = True
    assert torch.equal(mask.reshape(grid.shape_spectral), expected)
    assert not (grid.dealias > 0)[extra_row].any()


def test_kept_modes_of_a_batched_slice_is_a_view():
    grid = Grid(16, dtype=torch.float32)
    field = torch.zeros(3, 2, *grid.shape_spectral, dtype=torch.complex64)
    grid.kept_modes(field[:, 1]).fill_(1)
    assert field[:, 0].abs().sum() == 0
    written = field[:, 1].real > 0
    assert torch.all(written[:, grid.dealias > 0])  # every kept mode, in every member
    assert written.sum() == 3 * 2 * (grid.kept_wavenumber + 1) ** 2
    with pytest.raises(ValueError):
        grid.kept_modes(torch.zeros(3, 16, 16))


@pytest.mark.parametrize("condensation", ["split", "explicit"])
def test_a_step_keeps_the_removed_modes_zero_and_leaves_its_input_alone(condensation):
    grid = Grid(32, dtype=torch.float64)
    problem = Problem(grid, Params.reference(32), members=2, seed=4, dt=2e-3, condensation=condensation)
    stepforward(problem, 3)
    before = problem.sol
    copy = before.clone()
    stepforward(problem, 2)
    assert torch.equal(before, copy)
    assert problem.sol.abs().max() > 0
    assert torch.all(problem.sol[:, :, grid.dealias == 0] == 0)


@pytest.mark.parametrize("n", [8, 10, 32, 66])
def test_inverse_transform_of_kept_columns_equals_the_full_inverse(n):
    # the column array holds the same modes as the kept-mode view, transposed; its inverse transform
    # (which skips the zero columns kx > K) is the 2D inverse of the full, dealiased array
    grid = Grid(n, dtype=torch.float64)
    generator = torch.Generator().manual_seed(n)
    field = torch.randn(3, 2, *grid.shape_spectral, dtype=torch.complex128, generator=generator) * grid.dealias
    field[..., 0].imag = 0  # a real field: kx = 0 and kx = n/2 columns Hermitian
    field = grid.rfft(grid.irfft(field)) * grid.dealias  # Hermitian and dealiased
    columns = torch.zeros(3, 2, grid.kept_wavenumber + 1, n, dtype=torch.complex128)
    grid.kept_columns(columns).copy_(grid.kept_modes(field))
    assert torch.equal(columns.transpose(-1, -2), field[..., : grid.kept_wavenumber + 1])
    work = torch.zeros(3, 2, *grid.shape_spectral, dtype=torch.complex128)
    inverse = grid.irfft_columns(columns, work)
    torch.testing.assert_close(inverse, grid.irfft(field), rtol=0, atol=1e-12 * field.abs().max().item())
    assert torch.equal(grid.irfft_columns(columns, work), inverse)  # work may be reused
    with pytest.raises(ValueError):
        grid.kept_columns(torch.zeros(3, n, grid.kept_wavenumber + 1))
