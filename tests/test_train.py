"""Losses (the exact mean/fluctuation split, EDM and v weights, isotropy), EMA, the trainer
(overfitting, bit-exact resume, NaN guard), checkpoints and the config validation."""

import json
import math

import numpy as np
import pytest
import torch
import xarray as xr

from sciscore.errors import UserError
from sciscore.nn import NetworkConfig, build_network
from sciscore.sde.processes import VE, VP
from sciscore.train import (ExponentialMovingAverage, LossConfig, check_compatible, config_from_dict,
                            denoising_loss, isotropy_penalty, load_checkpoint, loss_weight, train)
from sciscore.train.data import data_statistics



TINY = {"channels": [8, 16], "num_residual": 1, "embed_dim": 16, "bypass_width": 16}


def plain_denoising_loss(network, process, x0, t, noise, config, context=None, sigma_data: float = 1.0):
    """mean w |F + z|^2 without the split: the reference for the split identity."""
    output = network(process.perturb(x0, t, noise), t, context)
    weight = loss_weight(process, t, config, sigma_data)
    return (weight[:, None, None, None] * (output + noise).square()).mean()


def fields(n=8, size=16, seed=0):
    """`s`: random fields with random means; `vorticity`: zero spatial mean in every sample."""
    rng = np.random.default_rng(seed)
    s = rng.standard_normal((n, size, size)) + 2 * rng.standard_normal((n, 1, 1))
    w = rng.standard_normal((n, size, size))
    w -= w.mean(axis=(1, 2), keepdims=True)
    return xr.Dataset(
        {"s": (("sample", "y", "x"), s.astype("float32"), {"units": "1", "long_name": "supersaturation"}),
         "vorticity": (("sample", "y", "x"), w.astype("float32"), {"units": "s-1", "long_name": "relative vorticity"})},
        coords={"y": ("y", np.arange(size) * 0.5, {"units": "m"}), "x": ("x", np.arange(size) * 0.5, {"units": "m"})})


def tiny_config(steps=6, **training):
    return config_from_dict({
        "data": {"variables": ["s", "vorticity"], "validation_fraction": 0.25},
        "network": TINY,
        "training": {"steps": steps, "batch_size": 2, "log_every": 1, "checkpoint_every": 3, "validation_every": 0,
                     "device": "cpu", "quiet": True, **training},
    })


# ---------------------------------------------------------------------------------------------
# Losses
@pytest.mark.parametrize("kind,process", [("dsm", VE(sigma_max=20.0)), ("edm", VE(sigma_max=20.0)), ("v", VP())])
def test_loss_split_sums_to_plain_loss(kind, process):
    """Deck & Bischoff 2023, eq. 16-17: mean term + fluctuation term == the plain loss (float64, exact up to round-off)."""
    torch.manual_seed(0)
    net = build_network(NetworkConfig(in_channels=2, mean_bypass="coupled", **TINY), process).double().eval()
    x0, noise = torch.randn(3, 2, 8, 8, dtype=torch.float64), torch.randn(3, 2, 8, 8, dtype=torch.float64)
    t = torch.tensor([0.05, 0.4, 0.9], dtype=torch.float64)
    config = LossConfig(kind=kind)
    with torch.no_grad():
        terms = denoising_loss(net, process, x0, t, noise, config)
        plain = plain_denoising_loss(net, process, x0, t, noise, config)
    assert float(terms["mean"]) > 0 and float(terms["fluctuation"]) > 0
    assert abs(float(terms["mean"] + terms["fluctuation"] - plain)) <= 1e-12 * float(plain)
    assert float(terms["loss"]) == pytest.approx(float(plain), rel=1e-12)


def test_v_loss_is_the_v_prediction_mse_for_vp():
    """For VP, w (F + z)^2 with w = 1 + sigma^2 equals |v_hat - v|^2, v = alpha z - sigma_t x0."""
    process = VP()
    torch.manual_seed(1)
    net = build_network(NetworkConfig(in_channels=1, mean_bypass="none", **TINY), process).double().eval()
    x0, noise = torch.randn(2, 1, 8, 8, dtype=torch.float64), torch.randn(2, 1, 8, 8, dtype=torch.float64)
    t = torch.tensor([0.3, 0.8], dtype=torch.float64)
    x_t = process.perturb(x0, t, noise)
    alpha = process.scale(t)[:, None, None, None]
    sigma_t = process.marginal_std(t)[:, None, None, None]
    eps_hat = -net(x_t, t)
    x0_hat = (x_t - sigma_t * eps_hat) / alpha
    v, v_hat = alpha * noise - sigma_t * x0, alpha * eps_hat - sigma_t * x0_hat
    expected = (v_hat - v).square().mean()
    got = denoising_loss(net, process, x0, t, noise, LossConfig(kind="v"))["loss"]
    assert float(got.detach()) == pytest.approx(float(expected.detach()), rel=1e-10)


def test_isotropy_penalty_batch_mean_inside_the_square():
    out = torch.stack([torch.zeros(1, 4, 4), torch.full((1, 4, 4), math.sqrt(2.0))])  # ||eps||^2/d = 0 and 2
    assert float(isotropy_penalty(out)) == pytest.approx(0.0, abs=1e-12)          # (mean(0, 2) - 1)^2
    assert float(isotropy_penalty(out, per_sample=True)) == pytest.approx(1.0)    # mean((0-1)^2, (2-1)^2)
    assert float(isotropy_penalty(torch.full((2, 1, 4, 4), 3.0))) == pytest.approx(64.0)  # (9 - 1)^2


# ---------------------------------------------------------------------------------------------
# EMA
def test_ema_update_formula():
    net = torch.nn.Linear(3, 2)
    ema = ExponentialMovingAverage(net, decay=0.9, warmup=False)
    before = [p.detach().clone() for p in ema.network.parameters()]
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    ema.update(net, step=0)
    for old, new, cur in zip(before, ema.network.parameters(), net.parameters()):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * cur)
    assert ExponentialMovingAverage(net, 0.999).decay_at(0) == pytest.approx(0.1)   # warm-up (1+k)/(10+k)
    assert ExponentialMovingAverage(net, 0.999).decay_at(10**6) == 0.999


# ---------------------------------------------------------------------------------------------
# Data statistics
def test_constant_mean_channels_are_detected():
    x = torch.randn(10, 2, 8, 8, dtype=torch.float64)
    x[:, 1] -= x[:, 1].mean(dim=(-2, -1), keepdim=True) - 0.3
    stats = data_statistics(x.float())
    assert stats["constant_means"][0] is None
    assert stats["constant_means"][1] == pytest.approx(0.3, abs=1e-6)


# ---------------------------------------------------------------------------------------------
# Trainer
def _losses(history):
    return [r["loss"] for r in history if "loss" in r]


def test_resume_is_bit_exact(tmp_path):
    """Interrupted (3 steps) + resumed (to 6) gives the same loss trace as 6 steps straight,
    with dropout, augmentation and EMA on."""
    ds = fields()

    def config(steps):
        c = tiny_config(steps)
        c.network.dropout = 0.3
        c.data.shifts = c.data.flips = True
        return c
    whole = train(config(6), tmp_path / "whole", dataset=ds)
    train(config(3), tmp_path / "split", dataset=ds)
    resumed = train(config(6), tmp_path / "split", dataset=ds, resume=True)
    trace = [json.loads(line)["loss"] for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert trace == _losses(whole.history) and len(trace) == 6
    assert _losses(resumed.history) == trace[3:]
    a, _ = load_checkpoint(tmp_path / "whole", ema=True)
    b, _ = load_checkpoint(tmp_path / "split", ema=True)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name


def test_checkpoint_round_trip_raw_and_ema(tmp_path):
    ds = fields()
    config = tiny_config(4)
    result = train(config, tmp_path / "run", dataset=ds)
    assert result.step == 4
    raw, saved = load_checkpoint(tmp_path / "run", ema=False)
    ema, _ = load_checkpoint(tmp_path / "run", ema=True)
    assert not raw.training and not ema.training
    assert saved.variables == ["s", "vorticity"] and saved.step == 4
    assert saved.grid.shape == [16, 16] and saved.grid.x[1] == 0.5
    assert saved.variable_attrs["s"]["long_name"] == "supersaturation"
    assert set(saved.constant_means) == {"vorticity"}
    assert saved.normalizer.variables == ("s", "vorticity")
    assert saved.process.name == "ve" and saved.process.sigma_max > 1
    # raw weights and EMA weights are different tensors, each restored exactly
    from safetensors.torch import load_file
    for network, name in ((raw, "model"), (ema, "ema")):
        stored = load_file(str(tmp_path / "run" / f"{name}.safetensors"))
        for key, value in network.state_dict().items():
            assert torch.equal(value, stored[key]), (name, key)
    assert any(not torch.equal(p, q) for p, q in zip(raw.parameters(), ema.parameters()))
    # the reloaded network computes what the trained one computed: same output twice
    x, t = torch.randn(2, 2, 16, 16), torch.tensor([0.2, 0.6])
    torch.testing.assert_close(ema(x, t), load_checkpoint(tmp_path / "run")[0](x, t), rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------
# Command line
def test_cli_trains_from_netcdf_and_toml(tmp_path, capsys):
    from sciscore.cli import main
    from sciscore.fields import write_fields

    data = write_fields(fields(), tmp_path / "fields.nc")
    toml = tmp_path / "train.toml"
    toml.write_text('[network]\nchannels = [8, 16]\nnum_residual = 1\nembed_dim = 16\nbypass_width = 16\n'
                    '[training]\nsteps = 50\nbatch_size = 2\nthreads = 1\n')
    args = ["train", "--data", str(data), "--variable", "s", "--variable", "vorticity", "--config", str(toml),
            "--steps", "2", "--augment", "shifts,flips", "--device", "cpu", "-q", "-o", str(tmp_path / "run")]
    assert main(args) == 0
    network, config = load_checkpoint(tmp_path / "run")
    assert config.step == 2                         # the command line wins over the file
    assert config.network.channels == (8, 16)       # the file wins over the defaults
    assert config.training_config["data"]["flips"] is True
    assert main(args) == 2 and "already holds a checkpoint" in capsys.readouterr().err
    assert main(args[:-2] + ["--steps", "3", "--resume", "-o", str(tmp_path / "run")]) == 0
    assert load_checkpoint(tmp_path / "run")[1].step == 3
    toml.write_text("[training]\nbatchsize = 2\n")
    capsys.readouterr()
    assert main(args[:-1] + [str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err
    assert "'training.batchsize' (did you mean 'training.batch_size'?)" in err and len(err.strip().splitlines()) == 1


def test_checkpoint_errors(tmp_path):
    ds = fields()
    train(tiny_config(3), tmp_path / "run", dataset=ds)
    _, config = load_checkpoint(tmp_path / "run")
    with pytest.raises(UserError, match=r"trained on variables \['s', 'vorticity'\], not \['temperature'\]"):
        check_compatible(config, variables=["temperature"])
    with pytest.raises(UserError, match="16x16 grid, not 32x32"):
        check_compatible(config, grid=(32, 32))
    shifted = fields().assign_coords(x=np.arange(16) * 0.25)
    with pytest.raises(UserError, match="x coordinates differ"):
        check_compatible(config, grid=shifted)
    check_compatible(config, variables=["s", "vorticity"], grid=ds)  # the training data itself is fine
    with pytest.raises(UserError, match="not found"):
        load_checkpoint(tmp_path / "missing")
    path = tmp_path / "run" / "ema.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(UserError, match="corrupt"):
        load_checkpoint(tmp_path / "run")
    (tmp_path / "run" / "config.json").write_text("{not json")
    with pytest.raises(UserError, match="corrupt"):
        load_checkpoint(tmp_path / "run")
    with pytest.raises(UserError, match="already holds a checkpoint"):
        train(tiny_config(3), tmp_path / "run", dataset=ds)


def test_bad_config_keys_are_named():
    with pytest.raises(UserError, match=r"'training.stpes' \(did you mean 'training.steps'\?\)"):
        config_from_dict({"training": {"stpes": 3}})
    with pytest.raises(UserError, match=r"'netwrok'"):
        config_from_dict({"netwrok": {}})
    with pytest.raises(UserError, match=r"'network.chanels'"):
        config_from_dict({"network": {"chanels": [8]}})
    with pytest.raises(UserError, match="derived from the data"):
        config_from_dict({"network": {"in_channels": 3}})
    # EDM's data std is the network's, derived from the data; the process no longer carries a copy
    with pytest.raises(UserError, match=r"config \[process\]: forward process 'edm' has no parameter sigma_data: "
                                        r"the network derives sigma_data from the training data"):
        config_from_dict({"process": {"name": "edm", "sigma_data": 0.5}})


def test_nonfinite_guard_stops_with_a_clear_message(tmp_path):
    config = tiny_config(40, max_nonfinite=3)
    config.optimizer.learning_rate = 1e30
    config.optimizer.warmup_steps = 1
    with pytest.raises(UserError, match="3 non-finite losses in a row"):
        train(config, tmp_path / "run", dataset=fields())


@pytest.mark.parametrize("mode", ["independent", "coupled"])
def test_tiny_model_overfits_a_handful_of_fields(mode):
    """Four fields, each with one fixed noise level and noise draw: Adam on the denoising loss
    drives it down by more than 10x (the network, bypass and loss can fit; gradients flow)."""
    torch.manual_seed(0)
    process = VE(sigma_max=20.0)
    net = build_network(NetworkConfig(in_channels=2, mean_bypass=mode, channels=(16, 32), num_residual=1,
                                      embed_dim=32, bypass_width=32), process)
    x0 = torch.randn(4, 2, 16, 16) + torch.randn(4, 2, 1, 1)
    t, noise = torch.tensor([0.3, 0.5, 0.7, 0.9]), torch.randn(4, 2, 16, 16)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    config = LossConfig()
    history = []
    for _ in range(120):
        loss = denoising_loss(net, process, x0, t, noise, config)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(float(loss.detach()))
    assert history[-1] < history[0] / 10, (history[0], history[-1])


@pytest.mark.parametrize("process,loss,preconditioning", [("edm", "edm", "edm"), ("vp", "v", "c_in"), ("subvp", "dsm", "none")])
def test_other_processes_and_losses_train(tmp_path, process, loss, preconditioning):
    config = config_from_dict({
        "data": {"variables": ["s"], "validation_fraction": 0.25},
        "network": {**TINY, "preconditioning": preconditioning, "mean_bypass": "independent"},
        "process": {"name": process}, "loss": {"kind": loss, "isotropy_weight": 0.1},
        "training": {"steps": 2, "batch_size": 2, "log_every": 1, "validation_every": 2, "device": "cpu", "quiet": True},
    })
    result = train(config, tmp_path / "run", dataset=fields())
    assert result.skipped == 0 and math.isfinite(result.last_loss) and math.isfinite(result.validation_loss)
    network, saved = load_checkpoint(tmp_path / "run")
    assert saved.process.name == process and network.process.name == process


def test_zero_terminal_snr_v_model_trains_and_refuses_the_monitor(tmp_path):
    """Lin et al. 2024's recipe (rescaled schedule, v-prediction through the EDM preconditioning)
    trains with finite losses; the quality monitor, which cannot start at sigma(T) = inf, is refused."""
    config = {
        "data": {"variables": ["s"], "validation_fraction": 0.25},
        "network": {**TINY, "preconditioning": "edm", "mean_bypass": "none"},
        "process": {"name": "discrete-vp", "zero_terminal_snr": True}, "loss": {"kind": "v"},
        "training": {"steps": 3, "batch_size": 4, "log_every": 1, "validation_every": 3, "device": "cpu", "quiet": True},
    }
    result = train(config_from_dict(config), tmp_path / "run", dataset=fields())
    assert result.skipped == 0 and math.isfinite(result.last_loss) and math.isfinite(result.validation_loss)
    config["training"]["monitor_every"] = 2
    with pytest.raises(UserError, match="monitor_every = 0"):
        train(config_from_dict(config), tmp_path / "monitored", dataset=fields())


def test_sigma_binned_loss_means():
    from sciscore.train import SigmaBinnedLoss
    process = VE(sigma_min=0.01, sigma_max=100.0)
    binned = SigmaBinnedLoss(process, bins=4, device="cpu")  # ln sigma bins of width ln(1e4)/4: edges 0.01, 0.1, 1, 10, 100
    t = process.t_of_sigma(torch.tensor([0.02, 0.05, 5.0, 50.0])).float()
    binned.add(t, torch.tensor([1.0, 3.0, 4.0, 8.0]))
    means = binned.read()
    assert list(means.values()) == pytest.approx([2.0, 4.0, 8.0])
    assert list(means) == ["0.01-0.1", "1-10", "10-100"]
    assert binned.read() == {}  # reset after reading


def test_inverse_square_root_decay_after_decay_start():
    """EDM2's schedule: alpha_ref / sqrt(max(k / k_ref, 1)) with k counted from 1, after the warm-up."""
    from sciscore.train.config import OptimizerConfig
    from sciscore.train.trainer import _learning_rate

    c = OptimizerConfig(learning_rate=1e-3, warmup_steps=2, decay_start=4)
    rates = [_learning_rate(c, k) for k in range(16)]
    assert rates[:4] == pytest.approx([5e-4, 1e-3, 1e-3, 1e-3])
    assert rates[7] == pytest.approx(1e-3 / 2**0.5) and rates[15] == pytest.approx(1e-3 / 2)
    with pytest.raises(UserError, match="decay_start"):
        OptimizerConfig(decay_start=-1)


def test_context_channels_epochs_and_warmup(tmp_path):
    config = config_from_dict({
        "data": {"variables": ["s"], "context_variables": ["vorticity"], "validation_fraction": 0.25,
                 "shifts": True, "flips": True},
        "network": TINY, "loss": {"context_dropout": 0.5},
        "optimizer": {"learning_rate": 1e-3, "warmup_steps": 4},
        "training": {"epochs": 2, "batch_size": 2, "log_every": 1, "validation_every": 0, "device": "cpu", "quiet": True},
    })
    result = train(config, tmp_path / "run", dataset=fields())
    assert result.step == 6  # 6 training fields / batch 2 = 3 steps per epoch
    assert [r["lr"] for r in result.history] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])
    network, saved = load_checkpoint(tmp_path / "run")
    assert network.config.context_channels == 1 and saved.context_variables == ["vorticity"]
    assert saved.context_normalizer.variables == ("vorticity",)
    x, context = torch.randn(2, 1, 16, 16), torch.randn(2, 1, 16, 16)
    assert network(x, torch.rand(2), context).shape == x.shape


def test_positive_stretch_is_fitted_saved_and_inverted_on_generation(tmp_path):
    """data.positive_stretch reaches the checkpoint's normalizer, and generated fields come back
    through its exact inverse (a field normalized and inverted again is unchanged)."""
    from sciscore.generate import load_model

    config = tiny_config(2)
    config.data.positive_stretch = {"s": 10.0}
    train(config, tmp_path / "run", dataset=fields())
    model = load_model(tmp_path / "run", device="cpu")
    assert model.normalizer.positive_stretch == (10.0, 1.0)
    ds = model.generate(2, steps=2)
    x = np.stack([ds[v].values for v in model.variables], axis=1).astype(np.float64)
    np.testing.assert_allclose(model.normalizer.invert(model.normalizer.apply(x)), x, rtol=1e-6, atol=1e-6)


def test_spectral_whitening_is_fitted_saved_and_loaded(tmp_path):
    """data.spectral_whitening reaches the checkpoint's normalizer (the gains fitted on the training
    split), and generation goes back through its inverse."""
    from sciscore.fields import fit_normalizer, train_validation_split
    from sciscore.generate import load_model
    from sciscore.train.config import DataConfig

    config = tiny_config(2)
    config.data.spectral_whitening = 0.5
    data = fields()
    train(config, tmp_path / "run", dataset=data)
    model = load_model(tmp_path / "run", device="cpu")
    train_idx, _ = train_validation_split(data.sizes["sample"], config.data.validation_fraction, config.training.seed)
    expected = fit_normalizer(data, config.data.variables, indices=train_idx, spectral_whitening=0.5)
    assert model.normalizer == expected and model.normalizer.spectral_whitening == 0.5
    ds = model.generate(2, steps=2)
    x = np.stack([ds[v].values for v in model.variables], axis=1).astype(np.float64)
    np.testing.assert_allclose(model.normalizer.invert(model.normalizer.apply(x)), x, rtol=1e-6, atol=1e-6)
    with pytest.raises(UserError, match="spectral_whitening"):
        DataConfig(variables=["s"], spectral_whitening=2.0)
