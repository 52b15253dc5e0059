"""The bad-input catalogue: for every command, nonsense options, wrongly typed config and recipe
values, malformed files and unusable output paths give exit status 2, exactly one line on stderr
(naming the problem), no traceback, and leave nothing behind in the output directory."""

import json
import os
import pickle
import re
import shutil

import numpy as np
import pytest

from cli_helpers import refuse
from conftest import make_fields
from sciscore.cli import main

SIMULATE = ["--resolution", "16", "--samples", "3", "--members", "3", "--spinup", "0.1", "--interval", "0.1", "-q"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, cli_inputs):
    """Read-only inputs: a data file, a tiny trained run, a generated file, malformed files."""
    root = tmp_path_factory.mktemp("inputs")
    for name in ("data.nc", "other.nc"):
        shutil.copy(cli_inputs / name, root / name)
    shutil.copytree(cli_inputs / "run", root / "run")
    partial = make_fields(n=4, ny=8, nx=8, seed=2)  # as an interrupted 'sciscore generate' leaves it
    partial.attrs.update(sciscore_status="incomplete", sciscore_samples_written=4, sciscore_samples_requested=10)
    partial.to_netcdf(root / "partial.nc")
    infinite = make_fields(n=16, ny=8, nx=8)
    infinite["temperature"][0, 0, 0] = float("inf")
    infinite.to_netcdf(root / "inf.nc")
    text_store = make_fields(n=16, ny=8, nx=8)  # a field stored as text, with zarr's object codec VLenUTF8
    text_store["temperature"] = text_store["temperature"].astype(str).astype(object)
    text_store.to_zarr(root / "text.zarr", zarr_format=2)
    shutil.copytree(root / "run", root / "planted")  # a pickle planted as the training state
    (root / "planted" / "training_state.pt").write_bytes(pickle.dumps({"step": object}, protocol=4))
    (root / "junk.bin").write_bytes(bytes(range(256)) * 4)
    (root / "empty.nc").write_bytes(b"")
    (root / "notes.txt").write_text("not a model\n")
    (root / "folder").mkdir()
    text = make_fields(n=16, ny=8, nx=8)
    text["temperature"] = (text["temperature"].dims, np.full(text["temperature"].shape, "warm", object))
    text.to_netcdf(root / "text.nc")
    for name, change in {  # checkpoints whose config.json has a wrongly typed list entry
        "normalizer_names": lambda record: record["normalizer"]["variables"].__setitem__(0, 0),
        "sigma_data_mean_text": lambda record: record["network"]["sigma_data_mean"].__setitem__(0, ""),
    }.items():
        shutil.copytree(root / "run", root / name)
        record = json.loads((root / name / "config.json").read_text())
        change(record)
        (root / name / "config.json").write_text(json.dumps(record))
    for name, text in {
        "steps_text.toml": '[training]\nsteps = "ten"\n',
        "lr_text.toml": '[optimizer]\nlearning_rate = "fast"\n',
        "training_scalar.toml": "training = 5\n",
        "process_scalar.toml": "process = 3\n",
        "channels_text.toml": '[network]\nchannels = "8,16"\n',
        "channels_floats.toml": "[network]\nchannels = [8.5, 16]\n",
        "variables_int.toml": "[data]\nvariables = 5\n",
        "dropout_bool.toml": "[network]\ndropout = true\n",
        "batch_zero.toml": "[training]\nbatch_size = 0\n",
        "checkpoint_zero.toml": "[training]\ncheckpoint_every = 0\n",
        "lr_inf.toml": "[optimizer]\nlearning_rate = inf\n",
        "fraction_one.toml": "[data]\nvalidation_fraction = 1.0\n",
        "normalization_bad.toml": '[data]\nnormalization = "zscore"\n',
        "unknown_key.toml": "[training]\nstepz = 3\n",
        "unknown_section.toml": "[trainer]\nsteps = 3\n",
        "invalid.toml": "[training\nsteps = 3\n",
        "cfl_text.toml": 'cfl = "big"\n',
        "interval_inf.toml": "interval = inf\n",
        "samples_float.toml": "samples = 2.5\n",
        "resolution_odd.toml": "resolution = 15\n",
        "simulate_scalar.toml": "simulate = 5\n",
        "model_scalar.toml": "model = 3\n",
        "model_text.toml": '[model]\nnu = "x"\n',
        "model_unknown.toml": "[model]\nbogus = 1.0\n",
        "recipe_unknown.toml": "resolutoin = 32\n",
        # found by test_cli_property.py
        "loss_weight_negative.toml": "[loss]\nfluctuation_weight = -1.0\n",
        "network_empty_text.toml": 'network = ""\n',
        "network_scalar.toml": "network = 0\n",
        "process_name_list.toml": "[process]\nname = []\n",
        "process_sigma_text.toml": '[process]\nsigma_min = "x"\n',
    }.items():
        (root / name).write_text(text)
    return root


def case(command, argv, message):
    return pytest.param(command, argv, message, id=f"{command}:{' '.join(argv)}"[:90].replace("{inputs}/", ""))


CASES = [
    # simulate: options
    case("simulate", ["--resolution", "15"], "even integer"),
    case("simulate", ["--resolution", "x"], "--resolution"),
    case("simulate", ["--resolution", "1000000"], "needs at least .* GB, more than"),
    case("simulate", ["--members", "1000000000000"], "needs at least .* GB, more than"),
    case("simulate", ["--samples", "1000000000000"], "GB free; ask for fewer samples"),  # ~2 PB of output
    case("simulate", ["--samples", "0"], "--samples"),
    case("simulate", ["--samples", "-3"], "--samples"),
    case("simulate", ["--seed", "-1"], "--seed"),
    case("simulate", ["--seed", "1.5"], "--seed"),
    case("simulate", ["--interval", "inf"], "--interval"),
    case("simulate", ["--interval", "nan"], "--interval"),
    case("simulate", ["--interval", "0"], "--interval"),
    case("simulate", ["--spinup", "-1"], "--spinup"),
    case("simulate", ["--members", "0"], "--members"),
    case("simulate", ["--cfl", "0"], "--cfl"),
    case("simulate", ["--cfl", "big"], "--cfl"),
    case("simulate", ["--threads", "-1"], "--threads"),
    case("simulate", ["--relax", "-1"], "--relax"),
    case("simulate", ["--context-wavenumber", "-1"], "--context-wavenumber"),
    case("simulate", ["--spinup-resolution", "4"], "spinup_resolution"),
    case("simulate", ["--model-param", "bogus=1"], "unknown model parameter"),
    case("simulate", ["--model-param", "nu"], "NAME=VALUE"),
    case("simulate", ["--model-param", "nu=abc"], "not a number"),
    case("simulate", ["--model-param", "nu=inf"], "finite"),
    case("simulate", ["--model-param", "nu=-1"], "nu=-1.0 must be >= 0"),
    case("simulate", ["--stepper", "RK2"], "--stepper"),
    case("simulate", ["--dtype", "float16"], "--dtype"),
    case("simulate", ["--bogus-option"], "unrecognized"),
    case("simulate", ["--spinup", "nan\n"], "--spinup"),  # a newline in a value stays inside the quotes
    case("simulate", ["two\nlines"], "unrecognized"),
    # simulate: recipes
    case("simulate", ["--recipe", "{inputs}/missing.toml"], "does not exist"),
    case("simulate", ["--recipe", "{inputs}/folder"], "is a directory"),
    case("simulate", ["--recipe", "{inputs}/junk.bin"], "not valid TOML"),
    case("simulate", ["--recipe", "{inputs}/invalid.toml"], "not valid TOML"),
    case("simulate", ["--recipe", "{inputs}/cfl_text.toml"], r"cfl must be a finite number"),
    case("simulate", ["--recipe", "{inputs}/interval_inf.toml"], r"interval must be a finite number"),
    case("simulate", ["--recipe", "{inputs}/samples_float.toml"], r"samples must be an integer"),
    case("simulate", ["--recipe", "{inputs}/resolution_odd.toml"], "even integer"),
    case("simulate", ["--recipe", "{inputs}/simulate_scalar.toml"], "'simulate' must be a table"),
    case("simulate", ["--recipe", "{inputs}/model_scalar.toml"], "'model' must be a table"),
    case("simulate", ["--recipe", "{inputs}/model_text.toml"], r"model\.nu must be a finite number"),
    case("simulate", ["--recipe", "{inputs}/model_unknown.toml"], "unknown model parameter"),
    case("simulate", ["--recipe", "{inputs}/recipe_unknown.toml"], "unknown option"),
    # train: options
    case("train", ["--threads", "-1"], "--threads"),
    case("train", ["--lr", "-1"], "--lr"),
    case("train", ["--lr", "nan"], "--lr"),
    case("train", ["--checkpoint-every", "0"], "--checkpoint-every"),
    case("train", ["--log-every", "0"], "--log-every"),
    case("train", ["--steps", "0"], "--steps"),
    case("train", ["--epochs", "-1"], "--epochs"),
    case("train", ["--batch-size", "0"], "--batch-size"),
    case("train", ["--dropout", "1"], "--dropout"),
    case("train", ["--validation-fraction", "1"], "--validation-fraction"),
    case("train", ["--ema-decay", "2"], "--ema-decay"),
    case("train", ["--warmup-steps", "-1"], "--warmup-steps"),
    case("train", ["--grad-clip", "-1"], "--grad-clip"),
    case("train", ["--seed", "-1"], "--seed"),
    case("train", ["--channels", "8,x"], "comma-separated integers"),
    case("train", ["--channels", "1000000,1000000"], r"channels \[1000000, 1000000\] need at least .* GB"),
    # outputs on a file system that refuses new files (permission bits say writable): before any work
    *([case("simulate", ["-o", "/proc/sciscore-out.nc"], "does not accept new files"),
       case("train", ["-o", "/proc/sciscore-run"], "does not accept new files"),
       case("generate", ["-o", "/proc/sciscore-out.nc"], "(does not accept new files|No such file)")]
      if os.path.isdir("/proc/self") else []),
    case("generate", ["--solver", "edm", "--solver-option", "s_churn=-1"], "finite number >= 0"),
    case("generate", ["--solver", "ode-heun", "--solver-option", "s_churn=1"], "does not take option"),
    case("generate", ["--solver-option", "junk"], "NAME=VALUE"),
    case("train", ["--augment", "spin"], "unknown augmentation"),
    case("train", ["--sigma-max", "big"], "--sigma-max"),
    case("train", ["--sigma-max", "nan"], "--sigma-max"),
    case("train", ["--sigma-max", "-1"], "--sigma-max"),
    case("train", ["--process", "xx"], "--process"),
    # train: config files
    case("train", ["--config", "{inputs}/missing.toml"], "not found"),
    case("train", ["--config", "{inputs}/folder"], "is a directory"),
    case("train", ["--config", "{inputs}/junk.bin"], "not valid TOML"),
    case("train", ["--config", "{inputs}/invalid.toml"], "not valid TOML"),
    case("train", ["--config", "{inputs}/steps_text.toml"], r"training\.steps must be an integer"),
    case("train", ["--config", "{inputs}/lr_text.toml"], r"optimizer\.learning_rate must be a finite number"),
    case("train", ["--config", "{inputs}/lr_inf.toml"], r"optimizer\.learning_rate must be a finite number"),
    case("train", ["--config", "{inputs}/training_scalar.toml"], r"\[training\] must be a table"),
    case("train", ["--config", "{inputs}/process_scalar.toml"], r"\[process\] must be a table"),
    case("train", ["--config", "{inputs}/channels_text.toml"], r"network\.channels must be a list"),
    case("train", ["--config", "{inputs}/channels_floats.toml"], r"network\.channels must be a list of integers"),
    case("train", ["--config", "{inputs}/variables_int.toml"], r"data\.variables must be a list"),
    case("train", ["--config", "{inputs}/dropout_bool.toml"], r"network\.dropout must be a finite number"),
    case("train", ["--config", "{inputs}/batch_zero.toml"], "batch_size must be >= 1"),
    case("train", ["--config", "{inputs}/checkpoint_zero.toml"], "checkpoint_every must be >= 1"),
    case("train", ["--config", "{inputs}/fraction_one.toml"], "validation_fraction must be in"),
    case("train", ["--config", "{inputs}/normalization_bad.toml"], "normalization must be one of"),
    case("train", ["--config", "{inputs}/unknown_key.toml"], "did you mean 'training.steps'"),
    case("train", ["--config", "{inputs}/unknown_section.toml"], "unknown config key"),
    case("train", ["--config", "{inputs}/loss_weight_negative.toml"], r"\[loss\]: fluctuation_weight must be >= 0"),
    case("train", ["--config", "{inputs}/network_empty_text.toml"], r"\[network\] must be a table"),
    case("train", ["--config", "{inputs}/network_scalar.toml"], r"\[network\] must be a table"),
    case("train", ["--config", "{inputs}/process_name_list.toml"], r"\[process\]: unknown forward process name"),
    case("train", ["--config", "{inputs}/process_sigma_text.toml"], r"process\.sigma_min must be a finite number"),
    # train: data, resume and output
    case("train", ["--data", "{inputs}/missing.nc", "--variable", "temperature"], "missing.nc"),
    case("train", ["--data", "{inputs}/junk.bin", "--variable", "temperature"], "junk.bin"),
    case("train", ["--data", "{inputs}/text.zarr", "--variable", "temperature"], "text.zarr holds text"),
    case("train", ["--data", "{inputs}/data.nc", "--variable", "humidity"], "humidity"),
    case("train", ["--resume", "--data", "{inputs}/other.nc", "-o", "{inputs}/run"], "--resume continues on the data"),
    case("train", ["--resume", "-o", "{inputs}/notes.txt"], "is a file"),
    case("train", ["--data", "{inputs}/data.nc", "-o", "{inputs}/notes.txt"], "is a file"),
    case("train", ["--data", "{inputs}/data.nc", "-o", "{inputs}/notes.txt/run"], "is a file"),
    case("train", ["--data", "{inputs}/data.nc", "-o", "{inputs}/run"], "already holds a checkpoint"),
    # generate
    case("generate", ["-n", "0"], "--samples"),
    case("generate", ["-n", "99999999999999999999"], "--samples"),
    case("generate", ["-n", "ten"], "--samples"),
    case("generate", ["--seed", "-1"], "--seed"),
    case("generate", ["--steps", "0"], "--steps"),
    case("generate", ["--batch-size", "0"], "--batch-size"),
    case("generate", ["--threads", "-1"], "--threads"),
    case("generate", ["--solver", "bogus"], "--solver"),
    case("generate", ["--model", "{inputs}/missing-run"], "not found"),
    case("generate", ["--model", "{inputs}/notes.txt"], "is a file, not a checkpoint directory"),
    case("generate", ["--model", "{inputs}/folder"], "config.json is missing"),
    case("generate", ["--model", "{inputs}/run", "--variable", "humidity"], "humidity"),
    case("generate", ["--model", "{inputs}/run", "--resume", "--overwrite"], "contradict"),
    case("generate", ["--model", "{inputs}/run", "--resume"], "does not exist"),
    case("generate", ["--model", "{inputs}/run", "-o", "{inputs}/folder"], "is a directory"),
    case("generate", ["--model", "{inputs}/run", "-o", "{out}/gen.zarr", "--resume"], "cannot resume: .*gen.zarr does not"),
    case("generate", ["--model", "{inputs}/run", "-o", "{inputs}/text.zarr", "--shard", "0/2"],
         "text.zarr was not written by 'sciscore generate'"),
    case("generate", ["--model", "{inputs}/run", "-o", "{inputs}/text.zarr", "--shard", "0/2", "--overwrite"],
         "--overwrite would delete .*text.zarr while other shards write it"),
    case("generate", ["--model", "{inputs}/run", "-o", "{inputs}/text.zarr"], "text.zarr already exists; pass --resume"),
    case("generate", ["--model", "{inputs}/run", "-o", "/proc/gen.zarr"], "does not accept new files"),
    case("generate", ["--model", "{inputs}/run", "-o", "{out}/gen_{{shard}}.zarr", "--shard", "1/2"],
         "write one zarr store together: drop '{shard}'"),
    case("generate", ["--model", "{inputs}/run", "-o", "{inputs}/notes.txt"], "already exists; pass --overwrite to"),
    # diagnose
    case("diagnose", ["--bins", "0"], "--bins"),
    case("diagnose", ["--bins", "1000000000"], "--bins"),
    case("diagnose", ["--color-shift-threshold", "nan"], "--color-shift-threshold"),
    case("diagnose", ["--color-shift-threshold", "-1"], "--color-shift-threshold"),
    case("diagnose", ["--alpha", "1"], "--alpha"),
    case("diagnose", ["--seed", "-1"], "--seed"),
    case("diagnose", ["--variable", "humidity"], "humidity"),
    case("diagnose", ["--spatial-dims", "y", "lat"], "spatial dimension.*'lat' not found"),
    case("diagnose", ["--reference", "{inputs}/missing.nc"], "missing.nc"),
    case("diagnose", ["--samples", "{inputs}/junk.bin"], "junk.bin"),
    case("diagnose", ["--samples", "{inputs}/text.zarr"], "'temperature' in .*text.zarr holds text"),
    case("diagnose", ["--samples", "{inputs}/empty.nc"], "empty.nc"),
    case("diagnose", ["-o", "{inputs}/notes.txt"], "not a directory"),
    case("diagnose", ["--samples", "{inputs}/partial.nc"], "incomplete.* after 4 of 10 samples.*--resume"),
    case("train", ["--data", "{inputs}/partial.nc"], "incomplete.* after 4 of 10 samples"),
    case("train", ["--data", "{inputs}/inf.nc"], "NaN or inf"),
    case("diagnose", ["--reference", "{inputs}/inf.nc"], "non-finite"),
    case("train", ["--data", "{inputs}/text.nc"], "temperature.* not real numbers"),
    case("diagnose", ["--samples", "{inputs}/text.nc"], "temperature.* not real numbers"),
    case("generate", ["--model", "{inputs}/normalizer_names"], "normalizer.variables must be a list of strings"),
    case("generate", ["--model", "{inputs}/sigma_data_mean_text"], "network.sigma_data_mean must be a list of finite"),
    case("train", ["--resume", "-o", "{inputs}/planted"], "training_state.pt is corrupt"),
]

# minimal valid arguments of each command; a case's own options come after them and win
BASE = {
    "simulate": [*SIMULATE, "-o", "{out}/sim.nc"],
    "train": ["--data", "{inputs}/data.nc", "--variable", "temperature", "--steps", "2", "-q", "--device", "cpu",
              "-o", "{out}/run"],
    "generate": ["--model", "{inputs}/run", "-n", "2", "--solver", "ode-heun", "--steps", "2", "-q", "-o",
                 "{out}/gen.nc"],
    "diagnose": ["--reference", "{inputs}/data.nc", "--samples", "{inputs}/other.nc", "-q", "-o", "{out}/report"],
}

MINIMAL = {**BASE, "simulate": ["-q", "-o", "{out}/sim.nc"], "train": ["-q", "--device", "cpu", "-o", "{out}/run"]}


def test_catalogue_has_every_command_and_enough_cases():
    assert {c.values[0] for c in CASES} == {"simulate", "train", "generate", "diagnose"}
    assert len(CASES) >= 60


@pytest.mark.parametrize("command, argv, message", CASES)
def test_bad_input_exits_2_with_one_line_and_leaves_nothing(inputs, tmp_path, capfd, command, argv, message):
    out = tmp_path / "out"
    out.mkdir()
    fill = {"inputs": str(inputs), "out": str(out)}
    # a config, a recipe or a run directory given by the case must not be overridden by the base options
    base = MINIMAL[command] if {"--config", "--recipe", "--resume"} & set(argv) else BASE[command]
    line = refuse(command, [a.format(**fill) for a in (*base, *argv)], capfd, watched=(out, inputs))
    assert re.search(message, line), line


def test_output_files_honour_the_umask(inputs, tmp_path):
    """Written files get 0666 less the umask (0644 under 022, 0660 under 007), not mkstemp's 0600."""
    previous = os.umask(0o022)
    try:
        assert main(["generate", *(a.format(inputs=inputs, out=tmp_path) for a in BASE["generate"])]) == 0
        assert (tmp_path / "gen.nc").stat().st_mode & 0o777 == 0o644
        os.umask(0o007)
        from sciscore.fields import write_fields

        write_fields(make_fields(n=2, ny=4, nx=4), tmp_path / "fields.nc")
        assert (tmp_path / "fields.nc").stat().st_mode & 0o777 == 0o660
    finally:
        os.umask(previous)
