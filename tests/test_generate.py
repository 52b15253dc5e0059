"""`sciscore generate` and the Python generation API, with a tiny checkpoint trained here."""

import json
import os

import numpy as np
import torch
import pytest
import xarray as xr

from conftest import make_fields
from sciscore.cli import main
from sciscore.errors import UserError
from sciscore.generate import generate_file, load_model
from sciscore.fields.sample_file import REQUEST
from sciscore.train.trainer import train

TINY = {
    "data": {"variables": ["temperature", "vorticity"], "normalization": "standard", "validation_fraction": 0.0},
    "network": {"channels": [8, 16], "num_residual": 1, "embed_dim": 16, "bypass_width": 16, "padding": "circular",
                "mean_bypass": "coupled"},
    "training": {"steps": 3, "batch_size": 4, "checkpoint_every": 3, "validation_every": 0, "log_every": 1,
                 "quiet": True, "device": "cpu"},
}
FAST = {"solver": "ode-heun", "steps": 3}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("run") / "tiny"
    train(TINY, run, dataset=make_fields(n=16, ny=8, nx=8))
    return run


@pytest.fixture(scope="module")
def model(run_dir):
    return load_model(run_dir, device="cpu")


def test_generate_returns_physical_fields_on_training_grid(model):
    ds = model.generate(5, seed=1, batch_size=2, **FAST)
    reference = make_fields(n=16, ny=8, nx=8)
    assert set(ds.data_vars) == {"temperature", "vorticity"}
    assert ds["temperature"].dims == ("sample", "y", "x") and ds.sizes["sample"] == 5
    np.testing.assert_allclose(ds["x"].values, reference["x"].values)
    assert ds["temperature"].attrs["units"] == "K"
    assert ds["x"].attrs["long_name"] == "x coordinate"
    # inverted normalization: temperatures near 280 K, not O(1) normalized values
    assert 250 < float(ds["temperature"].mean()) < 310
    # vorticity's spatial mean is 0 in every training field, and the model reproduces it exactly
    assert float(abs(ds["vorticity"].mean(("y", "x"))).max()) < 1e-5
    assert np.isfinite(ds["temperature"].values).all()
    assert ds.attrs["sciscore_solver"] == "ode-heun" and ds.attrs["sciscore_steps"] == 3
    # Heun: 2 per step (VE ends at sigma_min > 0, so every step is corrected), + 1 Tweedie denoising
    assert ds.attrs["sciscore_nfe_per_sample"] == 2 * 3 + 1


def test_batch_size_invariance(model):
    """Sample i has the same random stream for any batch size; the network's float32 arithmetic
    may differ in the last bits between batch shapes (the CPU kernels block by batch size)."""
    a = model.generate(5, seed=3, batch_size=5, **FAST)
    b = model.generate(5, seed=3, batch_size=2, **FAST)
    c = model.generate(5, seed=4, batch_size=5, **FAST)
    for v in ("temperature", "vorticity"):
        scale = float(np.abs(a[v].values).max())
        np.testing.assert_allclose(b[v].values, a[v].values, rtol=0, atol=1e-5 * scale)
        # another seed moves every field by O(1) of its scale, far beyond that tolerance
        assert np.abs(c[v].values - a[v].values).max(axis=(1, 2)).min() > 1e-2 * scale


def test_bf16_runs_the_network_in_bfloat16_and_the_sampler_in_float32(model, tmp_path, monkeypatch):
    seen = []
    convolution = next(m for m in model.network.modules() if isinstance(m, torch.nn.Conv2d))
    hook = convolution.register_forward_hook(lambda module, inputs, out: seen.append((inputs[0].dtype, out.dtype)))
    try:
        fp32 = model.generate(4, seed=2, **FAST)
        assert set(seen) == {(torch.float32, torch.float32)}
        seen.clear()
        bf16 = model.generate(4, seed=2, bf16=True, **FAST)
        assert set(seen) == {(torch.float32, torch.bfloat16)}  # the sampler's state stays float32
    finally:
        hook.remove()
    assert (fp32.attrs["sciscore_bf16"], bf16.attrs["sciscore_bf16"]) == (0, 1)
    for v in ("temperature", "vorticity"):
        a, b = fp32[v].values, bf16[v].values
        assert b.dtype == np.float32 and np.isfinite(b).all()
        difference = np.linalg.norm(b - a) / np.linalg.norm(a)
        assert 0 < difference < 0.05  # the network's bf16 rounding (2^-8), not another sample
    # a file begun in bf16 is not finished in float32
    target = tmp_path / "bf16.nc"
    interrupt_after(monkeypatch, "append_samples", 1)
    with pytest.raises(KeyboardInterrupt):
        generate_file(model, target, 4, seed=2, batch_size=2, bf16=True, **FAST)
    monkeypatch.undo()
    with pytest.raises(UserError, match="different settings"):
        generate_file(model, target, 4, seed=2, batch_size=2, resume=True, **FAST)
    generate_file(model, target, 4, seed=2, batch_size=2, resume=True, bf16=True, **FAST)
    full = generate_file(model, tmp_path / "full.nc", 4, seed=2, batch_size=2, bf16=True, **FAST)
    np.testing.assert_array_equal(xr.open_dataset(target)["vorticity"].values,
                                  xr.open_dataset(full)["vorticity"].values)


def test_variable_selection_and_unknown_variable(model):
    ds = model.generate(2, variables=["vorticity"], **FAST)
    assert list(ds.data_vars) == ["vorticity"]
    with pytest.raises(UserError, match=r"no variable 'humidity'; it has: temperature, vorticity"):
        model.generate(2, variables=["humidity"], **FAST)


def test_file_schema_cf_and_provenance(model, tmp_path):
    path = generate_file(model, tmp_path / "gen.nc", 4, seed=2, batch_size=3, **FAST)
    ds = xr.open_dataset(path)
    assert ds.attrs["Conventions"] == "CF-1.10"
    assert ds.attrs["sciscore_status"] == "complete" and ds.attrs["sciscore_samples_written"] == 4
    for key in ("sciscore_model_checksum", "sciscore_process", "sciscore_solver", "sciscore_steps",
                "sciscore_seed", "sciscore_version", "sciscore_command", "history", "sciscore_normalizer"):
        assert key in ds.attrs, key
    assert ds.attrs["sciscore_model_checksum"].startswith("sha256:")
    # provenance: the model by its name (not a local path), the library call (not the script name)
    assert ds.attrs["sciscore_model"] == model.path.name and "/" not in ds.attrs["sciscore_model"]
    assert ds.attrs["sciscore_command"].startswith("sciscore.generate.generate_file(n=4, ")
    assert ds.attrs["sciscore_torch_version"] == torch.__version__
    assert "sciscore.generate.generate_file(n=4" in ds.attrs["history"].splitlines()[0]
    assert ds["temperature"].dtype == np.float32
    expected = model.generate(4, seed=2, batch_size=3, **FAST)
    np.testing.assert_array_equal(ds["temperature"].values, expected["temperature"].values)

    from compliance_checker.runner import CheckSuite, ComplianceChecker

    CheckSuite.load_all_available_checkers()
    _, errors = ComplianceChecker.run_checker(str(path), ["cf:1.10"], verbose=0, criteria="strict",
                                              output_filename=os.devnull, output_format="text")
    assert not errors


def interrupt_after(monkeypatch, writer: str, batches: int) -> None:
    """Make `sciscore.generate.model.<writer>` (the batch writer of a file or a store) raise
    KeyboardInterrupt, as Ctrl-C would, after it has written `batches` batches."""
    from sciscore.generate import model as model_module

    original, calls = getattr(model_module, writer), {"n": 0}

    def interrupting(target, fields, **kwargs):
        if calls["n"] == batches:
            raise KeyboardInterrupt
        calls["n"] += 1
        original(target, fields, **kwargs)

    monkeypatch.setattr(model_module, writer, interrupting)


def sciscore_process(argv: list):
    """A real `python -m sciscore ARGV` (a `subprocess.Popen`, its output piped) with one torch
    thread, importing this checkout's sciscore, outside any torchrun group."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return subprocess.Popen([sys.executable, "-m", "sciscore", *argv],
                            env={**env, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_interrupt_and_resume_gives_the_uninterrupted_samples(model, tmp_path, monkeypatch):
    full = generate_file(model, tmp_path / "full.nc", 7, seed=5, batch_size=2, **FAST)
    target = tmp_path / "part.nc"
    interrupt_after(monkeypatch, "append_samples", 2)
    with pytest.raises(KeyboardInterrupt):
        generate_file(model, target, 7, seed=5, batch_size=2, **FAST)
    monkeypatch.undo()
    partial = xr.open_dataset(target)
    assert partial.attrs["sciscore_status"] == "incomplete"
    assert partial.attrs["sciscore_samples_written"] == 4 and partial.sizes["sample"] == 4
    partial.close()
    with pytest.raises(UserError, match="different settings"):
        generate_file(model, target, 7, seed=6, batch_size=2, resume=True, **FAST)
    generate_file(model, target, 7, seed=5, batch_size=2, resume=True, **FAST)
    a, b = xr.open_dataset(full), xr.open_dataset(target)
    assert b.attrs["sciscore_status"] == "complete"
    np.testing.assert_array_equal(a["temperature"].values, b["temperature"].values)
    np.testing.assert_array_equal(a["vorticity"].values, b["vorticity"].values)
    with pytest.raises(UserError, match="already complete"):
        generate_file(model, target, 7, seed=5, batch_size=2, resume=True, **FAST)



@pytest.mark.slow  # one more interpreter starts (torch imports); a few seconds on an idle machine
def test_sigkill_at_a_random_point_then_resume_is_the_uninterrupted_file(run_dir, tmp_path):
    """A real `python -m sciscore generate` killed (SIGKILL: no handler runs) at a seeded random
    batch; --resume finishes the file with exactly the uninterrupted samples."""
    import random
    import signal
    import time

    argv = ["generate", "--model", str(run_dir), "-n", "40", "--batch-size", "1", "--solver", "ode-heun",
            "--steps", "3", "--seed", "5", "--device", "cpu", "--threads", "1", "--quiet"]
    reference, path = tmp_path / "reference.nc", tmp_path / "killed.nc"
    assert main([*argv, "-o", str(reference)]) == 0
    process = sciscore_process([*argv, "-o", str(path)])
    # watch the batches land by the file's size (opening it would take HDF5's lock from the writer)
    draw = random.Random(13)
    batches, size, deadline = draw.randrange(2, 20), -1, time.monotonic() + 60
    while batches > 0 and time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before it could be killed"
        current = path.stat().st_size if path.exists() else -1
        if current != size:
            batches, size = batches - (size >= 0), current
        time.sleep(0.001)
    time.sleep(draw.uniform(0, 0.005))
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
    process.communicate()
    with xr.open_dataset(path) as partial:
        assert partial.attrs["sciscore_status"] == "incomplete" and partial.sizes["sample"] < 40
    assert main([*argv, "--resume", "-o", str(path)]) == 0
    with xr.open_dataset(reference) as a, xr.open_dataset(path) as b:
        assert b.attrs["sciscore_status"] == "complete" and b.sizes["sample"] == 40
        for name in ("temperature", "vorticity", "sample"):
            np.testing.assert_array_equal(a[name].values, b[name].values)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["killed.nc", "reference.nc"]  # nothing hidden left

def _cli(*args):
    return main(list(args))


def test_cli_writes_file(run_dir, tmp_path, capsys):
    out = tmp_path / "cli.nc"
    rc = _cli("generate", "--model", str(run_dir), "--variable", "vorticity", "-n", "3", "--steps", "2",
              "--device", "cpu", "-o", str(out), "--quiet")
    assert rc == 0
    ds = xr.open_dataset(out)
    assert list(ds.data_vars) == ["vorticity"] and ds.sizes["sample"] == 3
    assert _cli("generate", "--model", str(run_dir), "-n", "3", "-o", str(out), "--quiet") == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("problem, args, message", [
    ("bad model path", ["--model", "/no/such/run"], "not found"),
    ("unknown variable", ["--variable", "humidity"], "no variable 'humidity'; it has: temperature, vorticity"),
    ("unwritable output", ["-o", "/no/such/dir/out.nc"], "does not exist"),
    ("nonsense count", ["-n", "0"], "-n/--samples: expected an integer >= 1, got 0"),
])
def test_cli_bad_input_one_line_exit_2(run_dir, tmp_path, capsys, problem, args, message):
    argv = ["generate", "--model", str(run_dir), "--quiet", "-o", str(tmp_path / "x.nc")]
    rc = _cli(*argv, *args)
    err = capsys.readouterr().err
    assert rc == 2, problem
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "x.nc").exists()


def test_corrupt_checkpoint(run_dir, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    (broken / "ema.safetensors").write_bytes(b"\x00" * 64)
    assert _cli("generate", "--model", str(broken), "-o", str(tmp_path / "y.nc"), "--quiet") == 2
    assert "corrupt" in capsys.readouterr().err
    (broken / "config.json").write_text("{not json")
    assert _cli("generate", "--model", str(broken), "-o", str(tmp_path / "y.nc"), "--quiet") == 2
    assert "corrupt" in capsys.readouterr().err


def test_model_repr_is_one_line_summary(model):
    text = repr(model)
    assert "\n" not in text and len(text) < 400
    assert "temperature, vorticity on 8x8" in text and "ema weights" in text and model.checksum[:19] in text


def test_provenance_names_the_checkout_commit():
    import subprocess
    from pathlib import Path

    from sciscore.provenance import git_commit, software_attrs

    root = Path(__file__).resolve().parent.parent
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    git_commit.cache_clear()  # cached per process; HEAD may have moved since (a commit during the run)
    assert git_commit().removesuffix("-dirty") == head.stdout.strip()
    assert software_attrs()["sciscore_git_commit"] == git_commit()


def test_solver_options_reach_the_sampler_and_the_file(model, tmp_path):
    """--solver-option s_churn=... changes the EDM sampler's draws, is recorded, and must match on
    --resume; bad settings are one-line errors."""
    from sciscore.cli import main

    plain = model.generate(3, solver="edm", steps=4, seed=1, batch_size=3)
    churned = model.generate(3, solver="edm", steps=4, seed=1, batch_size=3, solver_options={"s_churn": 40.0})
    assert not np.array_equal(plain["temperature"].values, churned["temperature"].values)
    path = tmp_path / "churn.nc"
    code = main(["generate", "--model", str(model.path), "-n", "3", "--solver", "edm", "--steps", "4", "--seed", "1",
                 "--batch-size", "3", "--solver-option", "s_churn=40", "-o", str(path), "--quiet"])
    assert code == 0
    ds = xr.open_dataset(path)
    np.testing.assert_array_equal(ds["temperature"].values, churned["temperature"].values)
    assert json.loads(ds.attrs["sciscore_solver_options"]) == {"s_churn": 40.0}
    # the options are part of the request that --resume and 'sciscore merge' compare
    assert json.loads(ds.attrs[REQUEST])["solver_options"] == {"s_churn": 40.0}
    ds.close()


@pytest.mark.parametrize("option, message", [
    (["snr=0.1"], "does not take option"), (["s_churn"], "is not NAME=VALUE"),
    (["s_churn=lots"], "must be a number"), (["s_churn=-1"], "finite number >= 0"),
    (["s_churn=nan"], "finite number >= 0"), (["callback=print"], "not a sampler setting"),
])
def test_bad_solver_options_are_one_line_errors(option, message):
    from sciscore.sde.solvers import parse_solver_options

    with pytest.raises(UserError, match=message):
        parse_solver_options("edm", option)


def test_recommended_sampler_of_the_checkpoint_is_the_default(run_dir, tmp_path, capfd):
    """A `sampler` in config.json is what generate uses when no --solver is given (each of its
    settings overridden by those given); an explicit --solver takes nothing from it; a bad one is a
    one-line error naming the field."""
    import shutil

    from cli_helpers import refuse

    from sciscore.checkpoint import recommend_sampler

    recommended = tmp_path / "recommended"
    shutil.copytree(run_dir, recommended)
    with pytest.raises(UserError, match="cannot recommend this sampler: sampler.solver must be one of"):
        recommend_sampler(recommended, "heunn")
    record = recommend_sampler(recommended, "edm", steps=4, options={"s_churn": 2, "s_noise": 1.007})
    assert record.sampler == {"solver": "edm", "steps": 4, "options": {"s_churn": 2.0, "s_noise": 1.007}}
    raw = json.loads((recommended / "config.json").read_text())
    model = load_model(recommended, device="cpu")
    plain = load_model(run_dir, device="cpu")
    assert model.sampler == {"solver": "edm", "steps": 4, "options": {"s_churn": 2.0, "s_noise": 1.007}}
    by_default = model.generate(3, seed=1, batch_size=3)
    explicit = plain.generate(3, solver="edm", steps=4, seed=1, batch_size=3,
                              solver_options={"s_churn": 2.0, "s_noise": 1.007})
    np.testing.assert_array_equal(by_default["temperature"].values, explicit["temperature"].values)
    assert by_default.attrs["sciscore_solver"] == "edm" and by_default.attrs["sciscore_steps"] == 4
    assert json.loads(by_default.attrs["sciscore_solver_options"]) == {"s_churn": 2.0, "s_noise": 1.007}
    # overrides: steps and one option; an explicit solver ignores the recommendation
    options = model.sampler_options(steps=6, solver_options=["s_churn=5"])
    assert (options.solver, options.steps, options.solver_options) == ("edm", 6, {"s_churn": 5.0, "s_noise": 1.007})
    heun = model.sampler_options(solver="ode-heun")
    assert (heun.solver, heun.steps, heun.solver_options) == ("ode-heun", 18, {})
    assert plain.sampler_options().solver == "ode-heun"
    # the command line: no --solver uses it, --solver-option applies to it
    path = tmp_path / "cli.nc"
    assert main(["generate", "--model", str(recommended), "-n", "3", "--seed", "1", "--batch-size", "3",
                 "-o", str(path), "--quiet"]) == 0
    np.testing.assert_array_equal(xr.open_dataset(path)["temperature"].values, explicit["temperature"].values)
    assert "s_tmin='x' of solver 'edm' must be a number" in refuse(
        "generate", ["--model", str(recommended), "-n", "2", "--solver-option", "s_tmin=x", "-o", str(tmp_path / "bad.nc")],
        capfd)
    raw["sampler"] = {"solver": "edm", "options": {"s_curn": 2}}
    (recommended / "config.json").write_text(json.dumps(raw))
    line = refuse("generate", ["--model", str(recommended), "-n", "2", "-o", str(tmp_path / "bad.nc")], capfd)
    assert "field 'sampler' is invalid" in line and "s_curn" in line


@pytest.fixture(scope="module")
def guide_dir(tmp_path_factory):
    """A second tiny model of the same data (another training seed): a valid autoguidance guide."""
    run = tmp_path_factory.mktemp("guide") / "guide"
    train({**TINY, "training": {**TINY["training"], "seed": 7}}, run, dataset=make_fields(n=16, ny=8, nx=8))
    return run


def test_autoguidance_with_a_guide_model(run_dir, guide_dir, tmp_path):
    """w = 0 samples the guide, bit for bit; the model as its own guide changes nothing at any w; the
    weight, interval and guide's checksum are in the provenance and the resume request."""
    guided = load_model(run_dir, device="cpu", guide=guide_dir)
    guide_alone = load_model(guide_dir, device="cpu")
    of_guide = guide_alone.generate(3, seed=1, batch_size=3, **FAST)
    np.testing.assert_array_equal(guided.generate(3, seed=1, batch_size=3, guidance=0.0, **FAST)["temperature"].values,
                                  of_guide["temperature"].values)
    plain = guided.generate(3, seed=1, batch_size=3, **FAST)
    assert "sciscore_guidance" not in plain.attrs
    self_guided = load_model(run_dir, device="cpu", guide=run_dir).generate(3, seed=1, batch_size=3, guidance=2.5,
                                                                           **FAST)
    np.testing.assert_array_equal(self_guided["temperature"].values, plain["temperature"].values)
    ds = guided.generate(3, seed=1, batch_size=3, guidance=1.5, guidance_interval=(0.0, 3.0), **FAST)
    assert not np.array_equal(ds["temperature"].values, plain["temperature"].values)
    assert ds.attrs["sciscore_guidance"] == 1.5 and json.loads(ds.attrs["sciscore_guidance_interval"]) == [0.0, 3.0]
    assert ds.attrs["sciscore_guide_model_checksum"] == guided.guide_checksum != guided.checksum
    path = generate_file(guided, tmp_path / "g.nc", 3, batch_size=3, seed=1, guidance=1.5, guidance_interval=(0, 3),
                         **FAST)
    request = json.loads(xr.open_dataset(path).attrs[REQUEST])
    assert (request["guidance"], request["guidance_interval"], request["guide_checksum"]) == (
        1.5, [0.0, 3.0], guided.guide_checksum)
    np.testing.assert_array_equal(xr.open_dataset(path)["temperature"].values, ds["temperature"].values)


def test_recommended_autoguidance_is_the_default(run_dir, guide_dir, tmp_path):
    """A guide inside the model's directory, named by its recommended sampler, is loaded and used by
    default (as the shipped model does); --guidance 1 turns it off."""
    import shutil

    from sciscore.checkpoint import recommend_sampler

    model_dir = tmp_path / "recommended"
    shutil.copytree(run_dir, model_dir)
    shutil.copytree(guide_dir, model_dir / "guide")
    with pytest.raises(UserError, match="sampler.guidance needs sampler.guide"):
        recommend_sampler(model_dir, "ode-heun", steps=3, guidance=1.5)
    recommend_sampler(model_dir, "ode-heun", steps=3, guidance=1.5, guidance_interval=(0.0, 3.0), guide="guide")
    explicit = load_model(run_dir, device="cpu", guide=guide_dir).generate(3, seed=1, batch_size=3, guidance=1.5,
                                                                          guidance_interval=(0.0, 3.0), **FAST)
    path = tmp_path / "default.nc"
    assert main(["generate", "--model", str(model_dir), "-n", "3", "--seed", "1", "--batch-size", "3",
                 "-o", str(path), "--quiet", "--device", "cpu"]) == 0
    np.testing.assert_array_equal(xr.open_dataset(path)["temperature"].values, explicit["temperature"].values)
    stronger = load_model(model_dir, device="cpu").sampler_options(guidance=2.0)
    assert (stronger.guidance, stronger.guidance_interval) == (2.0, (0.0, 3.0))  # the recommended interval kept
    everywhere = load_model(model_dir, device="cpu").sampler_options(guidance_interval=(0.0, float("inf")))
    assert (everywhere.guidance, everywhere.guidance_interval) == (1.5, (0.0, float("inf")))
    off = tmp_path / "off.nc"
    assert main(["generate", "--model", str(model_dir), "-n", "3", "--seed", "1", "--batch-size", "3", "--guidance", "1",
                 "-o", str(off), "--quiet", "--device", "cpu"]) == 0
    plain = load_model(run_dir, device="cpu").generate(3, seed=1, batch_size=3, **FAST)
    np.testing.assert_array_equal(xr.open_dataset(off)["temperature"].values, plain["temperature"].values)
    assert "sciscore_guidance" not in xr.open_dataset(off).attrs


def test_bad_guidance_is_a_one_line_error(run_dir, tmp_path, capfd):
    from cli_helpers import refuse

    other = tmp_path / "other-data"
    train(TINY, other, dataset=make_fields(n=16, ny=8, nx=8, seed=5))
    base = ["--model", str(run_dir), "-n", "2", "-o", str(tmp_path / "bad.nc"), "--device", "cpu"]
    assert "needs a guide model" in refuse("generate", [*base, "--guidance", "2"], capfd)
    assert "its normalization differs" in refuse("generate", [*base, "--guidance", "2", "--guide-model", str(other)],
                                                 capfd)
    assert "not a run directory" in refuse("generate", [*base, "--guidance", "2", "--guide-model", str(tmp_path)], capfd)
    assert "expected 0 <= LO < HI" in refuse("generate", [*base, "--guidance-interval", "3,1"], capfd)
    assert "--guidance: expected a finite number" in refuse("generate", [*base, "--guidance", "-1"], capfd)
    assert not (tmp_path / "bad.nc").exists()


def test_a_guide_trained_in_the_models_normalization(run_dir, tmp_path, capfd):
    """data.normalizer_from: a model trained on other fields of the same distribution takes the
    model's normalization instead of fitting its own, so it is a valid guide; other variables are refused."""
    from cli_helpers import refuse

    from sciscore.checkpoint import read_checkpoint

    other_fields = make_fields(n=16, ny=8, nx=8, seed=5)
    guide = tmp_path / "guide"
    process = read_checkpoint(run_dir).process.to_dict()  # VE's sigma_max is fitted to the data unless given
    train({**TINY, "data": {**TINY["data"], "normalizer_from": str(run_dir)}, "process": process}, guide,
          dataset=other_fields)
    assert read_checkpoint(guide).normalizer == read_checkpoint(run_dir).normalizer
    fitted = tmp_path / "fitted"
    train(TINY, fitted, dataset=other_fields)
    assert read_checkpoint(fitted).normalizer != read_checkpoint(run_dir).normalizer
    ds = load_model(run_dir, device="cpu", guide=guide).generate(2, guidance=1.5, batch_size=2, **FAST)
    assert np.isfinite(ds["temperature"].values).all()
    with pytest.raises(UserError, match="its normalization differs"):
        load_model(run_dir, device="cpu", guide=fitted)
    with pytest.raises(UserError, match=r"data.normalizer_from: .* normalizes the variables \['temperature', "
                                        r"'vorticity'\], this run trains on \['vorticity'\]"):
        train({**TINY, "data": {**TINY["data"], "variables": ["vorticity"], "normalizer_from": str(run_dir)}},
              tmp_path / "wrong", dataset=other_fields)
