"""Post-hoc EMA (Karras et al. 2024, sec. 3): profiles, snapshot interpolation, and the trainer's
own EMA rebuilt from its snapshots."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from cli_helpers import refuse
from sciscore import checkpoint as ckpt
from sciscore.cli import main
from sciscore.generate import load_model
from sciscore.train import ExponentialMovingAverage
from sciscore.train.posthoc_ema import (PowerProfile, TrainerProfile, posthoc_ema, power_exponent, relative_width,
                                        snapshot_coefficients)
from sciscore.train.trainer import train
from test_train import fields, tiny_config


@pytest.mark.parametrize("sigma_rel", [0.03, 0.05, 0.1, 0.15, 0.25])
def test_power_profile_has_the_requested_relative_width(sigma_rel):
    """Karras et al. 2024, eq. 3: sigma_rel = sqrt((g+1)/((g+2)^2 (g+3))); the discrete profile j^g
    over many steps has that relative std."""
    gamma = power_exponent(sigma_rel)
    assert np.sqrt((gamma + 1) / ((gamma + 2) ** 2 * (gamma + 3))) == pytest.approx(sigma_rel, rel=1e-12)
    assert relative_width(PowerProfile(sigma_rel).weights(200_000)) == pytest.approx(sigma_rel, rel=1e-4)


def test_trainer_profile_equals_the_ema_recursion():
    """The weights w_j of TrainerProfile reproduce ExponentialMovingAverage applied step by step."""
    steps = 40
    thetas = torch.randn(steps + 1, 5, dtype=torch.float64)
    for warmup in (True, False):
        net = torch.nn.Linear(5, 1, bias=False).double()
        with torch.no_grad():
            net.weight.copy_(thetas[0])
        ema = ExponentialMovingAverage(net, 0.9, warmup)
        for k in range(steps):
            with torch.no_grad():
                net.weight.copy_(thetas[k + 1])
            ema.update(net, k)
        weights = torch.from_numpy(TrainerProfile(0.9, warmup).weights(steps))
        assert float(weights.sum()) == pytest.approx(1.0, abs=1e-14)
        torch.testing.assert_close(ema.network.weight[0], weights @ thetas, rtol=0, atol=1e-13)


def test_trainer_profile_is_a_power_profile_before_the_decay_cap():
    """With the (1+k)/(10+k) warm-up and decay 0.999, w_j ~ j^8 for K << 9000: sigma_rel ~ 0.09."""
    assert relative_width(TrainerProfile(0.999).weights(1500)) == pytest.approx(0.0908, abs=5e-4)
    assert relative_width(TrainerProfile(0.999).weights(1500)) == pytest.approx(
        relative_width(PowerProfile(0.09).weights(1500)), abs=2e-3)


def test_snapshot_interpolation_is_exact_for_linear_weights():
    """If theta_j is linear in j between snapshots, sum_i c_i theta(s_i) equals sum_j w_j theta_j."""
    steps, snapshots = 300, [0, 7, 50, 120, 121, 200, 300]
    theta = np.interp(np.arange(steps + 1), snapshots, np.random.default_rng(0).standard_normal(len(snapshots)))
    for profile in (PowerProfile(0.07), PowerProfile(0.2), TrainerProfile(0.99)):
        w = profile.weights(steps)
        c = snapshot_coefficients(w, snapshots)
        assert c.sum() == pytest.approx(1.0, abs=1e-12)
        assert c @ theta[snapshots] == pytest.approx(w @ theta, abs=1e-12)


def test_trainer_ema_is_rebuilt_from_every_step_snapshots(tmp_path):
    """A run with a snapshot after every optimizer step: the trainer's profile rebuilt post hoc equals
    the EMA the trainer kept (float32 round-off), and the written checkpoint loads and records it."""
    result = train(tiny_config(6, snapshot_every=1), tmp_path / "run", dataset=fields())
    assert [s for s, _ in ckpt.list_snapshots(result.run_dir)] == list(range(7))
    rebuilt = posthoc_ema(result.run_dir, TrainerProfile(0.999))
    kept = load_file(str(result.run_dir / ckpt.EMA))
    assert rebuilt.keys() == kept.keys()
    for name in kept:
        torch.testing.assert_close(rebuilt[name], kept[name], rtol=0, atol=2e-6)
    assert main(["ema", str(result.run_dir), "--sigma-rel", "0.1", "--step", "4", "-o", str(tmp_path / "ema"), "-q"]) == 0
    record = ckpt.read_checkpoint(tmp_path / "ema")
    assert record.ema["profile"] == "power" and record.ema["optimizer_steps"] == 4 and record.ema["snapshots"] == 5
    expected = posthoc_ema(result.run_dir, PowerProfile(0.1), step=4)
    model = load_model(tmp_path / "ema")
    for name, tensor in model.network.state_dict().items():
        torch.testing.assert_close(tensor, expected[name], rtol=0, atol=0)


def test_ema_refuses_bad_input(tmp_path, capfd):
    result = train(tiny_config(3), tmp_path / "run", dataset=fields())
    out = str(tmp_path / "out")
    assert "no weight snapshots" in refuse("ema", [str(result.run_dir), "--sigma-rel", "0.1", "-o", out], capfd)
    assert "sigma_rel must be in (0, 0.28]" in refuse("ema", [str(result.run_dir), "--sigma-rel", "0.5", "-o", out], capfd)
    assert "is the run directory itself" in refuse("ema", [str(result.run_dir), "--decay", "0.9", "-o",
                                                           str(result.run_dir)], capfd)
    assert "not a sciscore checkpoint" in refuse("ema", [str(tmp_path), "--decay", "0.9", "-o", out], capfd)
    snapped = train(tiny_config(3, snapshot_every=1), tmp_path / "snapped", dataset=fields())
    assert "no weight snapshot at optimizer step 9" in refuse(
        "ema", [str(snapped.run_dir), "--decay", "0.9", "--step", "9", "-o", out], capfd)
