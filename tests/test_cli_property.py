"""The bad-input guarantee as a property (hypothesis): any out-of-range or non-numeric option value,
nonsense choice, wrongly typed or malformed config/recipe, malformed data file or damaged checkpoint
makes `simulate`, `train`, `generate`, `diagnose`, `merge` and `study` exit with status 2 and one line
on stderr, leaving nothing behind (see `cli_helpers.refuse`). The fixed catalogue of the same
promise is test_cli_catalogue.py; a case found here is added there.

Every generated input is invalid by construction, so no example trains, samples or simulates: each
one fails at validation (milliseconds). The examples are derandomized: CI sees the same ones."""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
import tomllib
import types
import typing
from dataclasses import fields
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli_helpers import refuse
from conftest import make_fields
from sciscore.nn.network import NetworkConfig
from sciscore.sde.solvers import CONTINUOUS_GRIDS, SOLVERS
from sciscore.simulate.recipes import Recipe
from sciscore.train.config import DataConfig, OptimizerConfig, TrainingConfig
from sciscore.train.losses import LossConfig

SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# ---------------------------------------------------------------------------------------------
# Option values that no option of the given kind accepts
# a word with no digit is never a number (float() takes "inf"/"nan", which are invalid anyway)
WORDS = st.text(st.characters(categories=["L", "P", "S"], exclude_characters="\x00"), min_size=1, max_size=8)
# int() and float() strip surrounding whitespace: an error message quoting the value must stay one line
SPACE = st.sampled_from(["", " ", "\t", "\n", " \n"])
NON_FINITE = st.sampled_from(["nan", "inf", "-inf", "NaN", "Infinity", "-Infinity", "+inf", "nan(0)"])
FRACTIONS = st.floats(-1e6, 1e6).filter(lambda v: v != int(v)).map(repr)


def _padded(text: st.SearchStrategy) -> st.SearchStrategy:
    return st.tuples(SPACE, text, SPACE).map("".join)


def bad_integer(low: int, high: int | None = None) -> st.SearchStrategy:
    """Text that is not an integer in [low, high]."""
    options = [st.integers(max_value=low - 1).map(str), FRACTIONS, NON_FINITE, WORDS, st.just(""),
               st.sampled_from(["1e3", "0x10", "1_000.5", "2,3", "++1"])]
    if high is not None:
        options.append(st.integers(min_value=high + 1).map(str))
    return _padded(st.one_of(options))


def bad_number(low: float | None = None, high: float | None = None, low_open=False, high_open=False):
    """Text that is not a finite number in the interval low..high."""
    options = [NON_FINITE, WORDS, st.just(""), st.sampled_from(["1e999", "-1e999", "1.2.3", "1,5"])]
    if low is not None:
        below = st.floats(max_value=low, exclude_max=not low_open, allow_nan=False, allow_infinity=False)
        options.append(below.map(repr))
    if high is not None:
        above = st.floats(min_value=high, exclude_min=not high_open, allow_nan=False, allow_infinity=False)
        options.append(above.map(repr))
    return _padded(st.one_of(options))


def bad_choice(choices) -> st.SearchStrategy:
    return st.one_of(WORDS, st.sampled_from([c.upper() for c in choices] + [c + " " for c in choices])).filter(
        lambda text: text not in choices)


POSITIVE, NON_NEGATIVE, SEED = bad_integer(1), bad_integer(0), bad_integer(0, 2**63 - 1)
DEVICE = bad_choice(["auto", "cpu", "cuda", "mps"])

OPTIONS = {
    "simulate": {
        # the state of 3 members alone is 24 TB at 1e6 x 1e6 points, and of 1e12 members 2 PB
        "--resolution": st.one_of(POSITIVE, st.integers(5 * 10**5, 10**9).map(lambda n: str(2 * n))),
        "--members": st.one_of(POSITIVE, st.integers(10**12, 10**15).map(str)),
        "--samples": POSITIVE, "--seed": SEED, "--spinup": bad_number(0),
        "--interval": bad_number(0, low_open=True), "--spinup-resolution": POSITIVE,
        "--relax": bad_number(0), "--context-wavenumber": NON_NEGATIVE, "--cfl": bad_number(0, low_open=True),
        "--threads": POSITIVE, "--stepper": bad_choice(["ETDRK4", "IFRK4"]),
        "--dtype": bad_choice(["float32", "float64"]), "--device": DEVICE,
    },
    "train": {
        "--validation-fraction": bad_number(0, 1, high_open=True), "--num-residual": NON_NEGATIVE,
        "--dropout": bad_number(0, 1, high_open=True), "--sigma-min": bad_number(0, low_open=True),
        "--sigma-max": bad_number(0, low_open=True).filter(lambda text: text.strip() != "auto"),
        "--mean-weight": bad_number(0), "--fluctuation-weight": bad_number(0), "--isotropy-weight": bad_number(0),
        "--context-dropout": bad_number(0, 1, high_open=True), "--steps": POSITIVE, "--epochs": POSITIVE,
        "--batch-size": POSITIVE, "--lr": bad_number(0, low_open=True), "--warmup-steps": NON_NEGATIVE,
        "--grad-clip": bad_number(0), "--ema-decay": bad_number(0, 1), "--decay-start": NON_NEGATIVE,
        "--seed": SEED, "--log-every": POSITIVE, "--checkpoint-every": POSITIVE, "--validation-every": NON_NEGATIVE,
        "--threads": POSITIVE, "--monitor-every": NON_NEGATIVE, "--monitor-samples": POSITIVE,
        "--monitor-steps": POSITIVE, "--normalization": bad_choice(["standard", "minmax", "mean-spatial"]),
        "--padding": bad_choice(["zero", "circular"]), "--mean-bypass": bad_choice(["none", "independent", "coupled"]),
        "--preconditioning": bad_choice(["c_in", "edm", "none"]), "--process": bad_choice(["ve", "vp", "subvp", "edm"]),
        "--loss": bad_choice(["dsm", "edm", "v"]), "--device": DEVICE,
        "--channels": st.one_of(WORDS, st.sampled_from(["8,x", "8.5,16", "0,16", "-8,16", "8", ",", "8,,16,-1"]),
                                st.integers(10**6, 10**9).map(lambda c: f"8,{c},{c}")),  # >= 36 TB of weights
        "--augment": WORDS.filter(lambda text: not set(text.split(",")) <= {"", "none", "shifts", "flips", "x-flips",
                                                                            "y-flips", "rotations"}),
    },
    "generate": {
        "--samples": bad_integer(1, 2**31 - 1), "--steps": POSITIVE, "--seed": SEED, "--batch-size": POSITIVE,
        "--threads": POSITIVE, "--solver": bad_choice(SOLVERS), "--grid": bad_choice(CONTINUOUS_GRIDS), "--device": DEVICE,
        "--solver-option": st.one_of(WORDS.filter(lambda text: "=" not in text),
                                     st.tuples(WORDS, bad_number(0)).map("=".join)),
        "--shard": st.one_of(WORDS.filter(lambda text: text != "auto"),
                             st.tuples(st.integers(-3, 9), st.integers(-3, 3)).filter(
                                 lambda iv: not 0 <= iv[0] < iv[1]).map(lambda iv: f"{iv[0]}/{iv[1]}")),
    },
    "diagnose": {
        "--bins": bad_integer(1, 100_000), "--color-shift-threshold": bad_number(0),
        "--alpha": bad_number(0, 1, low_open=True, high_open=True), "--seed": SEED,
    },
    "study": {"--seed": SEED, "--threads": POSITIVE, "--device": DEVICE},
}

# valid arguments that run in a second or two; the generated input comes after them and wins
BASE = {
    "simulate": ["--resolution", "16", "--samples", "3", "--members", "3", "--spinup", "0.1", "--interval", "0.1",
                 "-q", "-o", "{out}/sim.nc"],
    "train": ["--data", "{inputs}/data.nc", "--variable", "temperature", "--steps", "2", "-q", "--device", "cpu",
              "-o", "{out}/run"],
    "generate": ["--model", "{inputs}/run", "-n", "2", "--solver", "ode-heun", "--steps", "2", "-q", "-o",
                 "{out}/gen.nc"],
    "diagnose": ["--reference", "{inputs}/data.nc", "--samples", "{inputs}/other.nc", "-q", "-o", "{out}/report"],
    "study": ["run", "coupled-bypass", "--quick", "-q", "-o", "{out}/study"],
}


def _fill(argv, inputs, out) -> list:
    return [a.format(inputs=inputs, out=out) for a in argv]


def _loud(argv: list, loud: bool) -> list:
    """`argv` without -q when `loud`: progress bars and info messages must not precede the error either."""
    return [a for a in argv if a != "-q"] if loud else argv


@settings(max_examples=120, **SETTINGS)
@given(loud=st.booleans(), command_option=st.sampled_from([(c, o) for c, options in OPTIONS.items() for o in options]),
       joined=st.booleans(), data=st.data())
def test_any_bad_option_value_exits_2(cli_inputs, tmp_path, capfd, loud, command_option, joined, data):
    command, option = command_option
    value = data.draw(OPTIONS[command][option], label=option)
    given_as = [f"{option}={value}"] if joined else [option, value]
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    line = refuse(command, _loud([*_fill(BASE[command], cli_inputs, folder), *given_as], loud), capfd,
                  watched=(tmp_path, cli_inputs))
    assert option in line or option == "--solver-option", line  # a solver option's error names the setting


# ---------------------------------------------------------------------------------------------
# TOML documents: training configs and simulate recipes with one wrong value
def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else "inf" if value > 0 else "-inf"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # printable ASCII only (see TEXT): JSON's escapes are TOML's
    if isinstance(value, list):
        return "[" + ", ".join(map(toml_value, value)) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_document(document: dict) -> str:
    lines = [f"{key} = {toml_value(value)}" for key, value in document.items() if not isinstance(value, dict)]
    for name, table in document.items():
        if isinstance(table, dict):
            lines += [f"[{name}]", *(f"{key} = {toml_value(value)}" for key, value in table.items())]
    return "\n".join(lines) + "\n"


TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=6)
# values of each TOML type; a key declared float takes an int too, one declared int no float
TOML = {
    "int": st.integers(-10**6, 10**6),
    "float": st.floats(-1e6, 1e6).filter(lambda v: v != int(v)),
    "integral float": st.integers(-100, 100).map(float),
    "non-finite": st.sampled_from([math.nan, math.inf, -math.inf]),
    "bool": st.booleans(),
    "str": TEXT,
    "list": st.lists(st.integers(0, 9), max_size=3),
    "table": st.dictionaries(st.sampled_from(["a", "b"]), st.integers(0, 3), max_size=2),
}
ACCEPTS = {int: {"int"}, float: {"int", "float", "integral float"}, bool: {"bool"}, str: {"str"}, list: {"list"},
           tuple: {"list"}, dict: {"table"}, type(None): set()}


def wrong_value(hint) -> st.SearchStrategy:
    """A TOML value of a type the declared type `hint` does not take."""
    union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    alternatives = typing.get_args(hint) if union else (typing.get_origin(hint) or hint,)
    accepted = set().union(*(ACCEPTS[t] for t in alternatives))
    return st.one_of([strategy for name, strategy in TOML.items() if name not in accepted])


def declared(cls) -> dict:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


SECTIONS = {"data": DataConfig, "network": NetworkConfig, "loss": LossConfig, "optimizer": OptimizerConfig,
            "training": TrainingConfig}
BELOW = {  # (section, key): values out of the key's range
    **{("training", key): st.integers(-5, 0) for key in ("steps", "epochs", "batch_size", "log_every",
                                                         "checkpoint_every", "validation_batches",
                                                         "max_nonfinite", "monitor_samples", "monitor_steps",
                                                         "threads")},
    **{("training", key): st.integers(-5, -1) for key in ("validation_every", "monitor_every", "seed")},
    **{("optimizer", key): st.integers(-5, -1) for key in ("warmup_steps", "decay_start")},
    ("optimizer", "learning_rate"): st.floats(-1, 0), ("optimizer", "eps"): st.floats(-1, 0),
    ("optimizer", "grad_clip"): st.floats(-9, -0.01), ("optimizer", "ema_decay"): st.sampled_from([-0.5, 1.5]),
    ("optimizer", "beta1"): st.sampled_from([-0.1, 1.0, 2.0]), ("optimizer", "beta2"): st.sampled_from([-0.1, 1.0]),
    ("data", "validation_fraction"): st.sampled_from([-0.1, 1.0, 3.0]),
    ("network", "num_residual"): st.integers(-5, -1), ("network", "embed_dim"): st.sampled_from([-2, 0, 1, 15]),
    ("network", "dropout"): st.sampled_from([-0.1, 1.0]), ("network", "channels"): st.sampled_from([[8], [0, 8], [8, -16]]),
    **{("loss", key): st.floats(-9, -0.01) for key in ("mean_weight", "fluctuation_weight", "isotropy_weight")},
    ("loss", "context_dropout"): st.sampled_from([-0.1, 1.0]), ("loss", "p_std"): st.floats(-1, 0),
    ("loss", "sigma_bins"): st.integers(-3, 0),
    **{(section, key): TEXT.filter(lambda text, ok=ok: text not in ok) for (section, key), ok in {
        ("data", "normalization"): ("standard", "minmax", "mean-spatial"), ("data", "flips"): ("x", "y"),
        ("network", "padding"): ("zero", "circular"), ("network", "mean_bypass"): ("none", "independent", "coupled"),
        ("network", "preconditioning"): ("c_in", "edm", "none"), ("network", "noise_label"): ("auto", "time", "log_sigma"),
        ("loss", "kind"): ("dsm", "edm", "v"), ("training", "device"): ("auto", "cpu", "cuda", "mps")}.items()},
}
PROCESS = {  # [process] keys: wrong types and out-of-range values
    "name": st.one_of(TOML["int"], TOML["list"], TEXT.filter(lambda text: text not in ("ve", "vp", "subvp", "edm"))),
    "sigma_min": st.one_of(TOML["str"], TOML["list"], TOML["non-finite"], st.floats(-1, 0)),
    "sigma_max": st.one_of(TOML["list"], TOML["table"], TOML["non-finite"], st.floats(-1, 0),
                           TEXT.filter(lambda text: text != "auto")),
}
TRAIN_CONFIG = {
    "data": {"paths": ["{inputs}/data.nc"], "variables": ["temperature"], "validation_fraction": 0.0},
    "network": {"channels": [8, 16], "num_residual": 1, "embed_dim": 16, "bypass_width": 16, "padding": "circular"},
    "training": {"steps": 2, "batch_size": 4, "checkpoint_every": 2, "validation_every": 0, "log_every": 1,
                 "device": "cpu"},
}


@st.composite
def bad_train_config(draw, inputs: Path):
    """(TOML text, what the error must name): a working config with one key made wrong."""
    config = json.loads(json.dumps(TRAIN_CONFIG).replace("{inputs}", str(inputs)))
    kind = draw(st.sampled_from(["type", "range", "process", "not a table", "unknown key"]))
    if kind == "type":
        section = draw(st.sampled_from(sorted(SECTIONS)))
        key, hint = draw(st.sampled_from(sorted(declared(SECTIONS[section]).items(), key=str)))
        config.setdefault(section, {})[key] = draw(wrong_value(hint))
        return toml_document(config), key
    if kind == "range":
        (section, key), values = draw(st.sampled_from(sorted(BELOW.items(), key=str)))
        config.setdefault(section, {})[key] = draw(values)
        return toml_document(config), key
    if kind == "process":
        key = draw(st.sampled_from(sorted(PROCESS)))
        config["process"] = {"name": "ve", key: draw(PROCESS[key])}
        return toml_document(config), key
    if kind == "not a table":
        section = draw(st.sampled_from([*SECTIONS, "process"]))
        config[section] = draw(st.one_of(TOML["int"], TOML["str"], TOML["bool"], TOML["list"]))
        return toml_document(config), section
    section = draw(st.sampled_from(["", *SECTIONS]))
    key = draw(st.from_regex(r"[a-z]{1,8}", fullmatch=True).filter(
        lambda k: k not in (declared(SECTIONS[section]) if section else [*SECTIONS, "process"])))
    if section:
        config.setdefault(section, {})[key] = 1
    else:
        config[key] = 1
    return toml_document(config), key


@settings(max_examples=80, **SETTINGS)
@given(loud=st.booleans(), data=st.data())
def test_any_wrongly_typed_or_out_of_range_config_value_exits_2_naming_it(cli_inputs, tmp_path, capfd, loud, data):
    text, name = data.draw(bad_train_config(cli_inputs))
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    path = folder / "config.toml"
    path.write_text(text)
    line = refuse("train", _loud(["--config", str(path), "-q", "-o", str(folder / "run")], loud), capfd,
                  watched=(tmp_path, cli_inputs))
    assert re.search(rf"\b{re.escape(name)}\b", line), (text, line)


def _is_toml(text: bytes) -> bool:
    try:
        tomllib.loads(text.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    return True


@settings(max_examples=15, **SETTINGS)
@given(junk=st.binary(max_size=300).filter(lambda junk: not _is_toml(junk)), recipe=st.booleans())
def test_a_config_or_recipe_of_junk_bytes_exits_2(cli_inputs, tmp_path, capfd, junk, recipe):
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    path = folder / "junk.toml"
    path.write_bytes(junk)
    argv = ["--recipe" if recipe else "--config", str(path), "-q", "-o", str(folder / ("sim.nc" if recipe else "run"))]
    refuse("simulate" if recipe else "train", argv, capfd, watched=(tmp_path, cli_inputs))


RECIPE = {"resolution": 16, "samples": 3, "members": 3, "spinup": 0.1, "interval": 0.1}
RECIPE_RANGES = {
    "resolution": st.one_of(st.integers(-4, 7), st.integers(4, 40).map(lambda n: 2 * n + 1)),
    **{key: st.integers(-5, 0) for key in ("samples", "members", "threads")},
    "seed": st.integers(-5, -1), "spinup": st.floats(-9, -0.01), "relax": st.floats(-9, -0.01),
    "interval": st.floats(-9, 0), "cfl": st.floats(-9, 0), "context_wavenumber": st.integers(-5, -1),
    "spinup_resolution": st.one_of(st.integers(-4, 7), st.integers(17, 64)),
    "stepper": TEXT.filter(lambda text: text not in ("ETDRK4", "IFRK4")),
    "dtype": TEXT.filter(lambda text: text not in ("float32", "float64")),
    "device": TEXT.filter(lambda text: text not in ("auto", "cpu", "cuda", "mps")),
}
MODEL_RANGES = {"nu": st.floats(-9, -1e-3), "mu": st.floats(-9, -1e-3), "epsilon": st.floats(-9, -1e-3),
                "k_f": st.floats(-9, 0), "delta_f": st.floats(-9, 0), "e": st.floats(-9, -1e-3),
                "p": st.one_of(st.integers(-3, 0), st.sampled_from([1.5, 2.5]))}


@st.composite
def bad_recipe(draw):
    """(TOML text, what the error must name): a working recipe with one option made wrong."""
    recipe = dict(RECIPE)
    kind = draw(st.sampled_from(["type", "range", "model type", "model range", "not a table", "unknown key"]))
    if kind == "type":
        key, hint = draw(st.sampled_from(sorted((k, h) for k, h in declared(Recipe).items() if k != "model")))
        recipe[key] = draw(wrong_value(hint))
        name = key
    elif kind == "range":
        name = draw(st.sampled_from(sorted(RECIPE_RANGES)))
        recipe[name] = draw(RECIPE_RANGES[name])
    elif kind == "model type":
        name = draw(st.sampled_from(sorted(MODEL_RANGES)))
        recipe["model"] = {name: draw(st.one_of(TOML["str"], TOML["bool"], TOML["list"], TOML["table"],
                                                TOML["non-finite"]))}
    elif kind == "model range":
        name = draw(st.sampled_from(sorted(MODEL_RANGES)))
        recipe["model"] = {name: draw(MODEL_RANGES[name])}
    elif kind == "not a table":
        name = draw(st.sampled_from(["simulate", "model"]))
        recipe[name] = draw(st.one_of(TOML["int"], TOML["str"], TOML["bool"], TOML["list"]))
    else:
        name = draw(st.from_regex(r"[a-z_]{1,10}", fullmatch=True).filter(lambda k: k not in declared(Recipe)))
        recipe[name] = 1
    nested = kind != "not a table" and draw(st.booleans())  # the [simulate] table or the top level
    if nested:
        recipe = {"simulate": {k: v for k, v in recipe.items() if k != "model"},
                  **({"model": recipe["model"]} if "model" in recipe else {})}
    return toml_document(recipe), name


@settings(max_examples=60, **SETTINGS)
@given(loud=st.booleans(), recipe_name=bad_recipe())
def test_any_wrongly_typed_or_out_of_range_recipe_value_exits_2_naming_it(cli_inputs, tmp_path, capfd, loud, recipe_name):
    text, name = recipe_name
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    path = folder / "recipe.toml"
    path.write_text(text)
    line = refuse("simulate", _loud(["--recipe", str(path), "-q", "-o", str(folder / "sim.nc")], loud), capfd,
                  watched=(tmp_path, cli_inputs))
    assert re.search(rf"\b{re.escape(name)}\b", line), (text, line)


# ---------------------------------------------------------------------------------------------
# Malformed data files: what `train --data` and `diagnose --reference/--samples` are given
MAGIC = {"none": b"", "netcdf3": b"CDF\x01", "netcdf4": b"\x89HDF\r\n\x1a\n"}
DATA_FILES = st.one_of(
    st.tuples(st.just("random bytes"), st.sampled_from(sorted(MAGIC)), st.binary(max_size=2048)),
    st.tuples(st.just("truncated"), st.floats(0, 1, exclude_max=True)),
    st.tuples(st.just("missing variable")),
    st.tuples(st.just("wrong dims"), st.sampled_from(["2d", "4d", "renamed", "no samples", "y of 1", "x of 1"])),
    st.tuples(st.just("non-finite"), st.sampled_from(["temperature", "vorticity"]),
              st.tuples(st.integers(0, 15), st.integers(0, 7), st.integers(0, 7)),
              st.sampled_from([math.nan, math.inf, -math.inf])),
    st.tuples(st.just("incomplete"), st.integers(0, 15)),
    st.tuples(st.just("text values")),
    st.tuples(st.just("junk zarr"), st.sampled_from(["zarr.json", ".zgroup", ".zattrs"]), st.binary(max_size=200)),
)


def write_data_file(spec: tuple, inputs: Path, folder: Path) -> Path:
    """The malformed file (or zarr store) that `spec`, drawn from DATA_FILES, describes."""
    kind = spec[0]
    path = folder / ("fields.zarr" if kind == "junk zarr" else "fields.nc")
    fields_ = make_fields(n=16, ny=8, nx=8, seed=3)
    if kind == "random bytes":
        path.write_bytes(MAGIC[spec[1]] + spec[2])
        return path
    if kind == "truncated":
        whole = (inputs / "data.nc").read_bytes()
        path.write_bytes(whole[:int(spec[1] * len(whole))])
        return path
    if kind == "junk zarr":
        path.mkdir()
        (path / spec[1]).write_bytes(spec[2])
        return path
    if kind == "missing variable":
        fields_ = fields_.drop_vars("temperature")
    elif kind == "wrong dims":
        shape = spec[1]
        if shape == "2d":
            fields_ = fields_.isel(sample=0)
        elif shape == "4d":
            fields_ = fields_.expand_dims(level=2)
        elif shape == "renamed":
            fields_ = fields_.rename(sample="a", y="b", x="c")
        elif shape == "no samples":
            fields_ = fields_.isel(sample=slice(0, 0))
        else:
            fields_ = fields_.isel({shape[0]: slice(0, 1)})
    elif kind == "non-finite":
        name, (i, j, k), value = spec[1:]
        fields_[name].values[i, j, k] = value
    elif kind == "incomplete":
        fields_.attrs.update(sciscore_status="incomplete", sciscore_samples_written=spec[1],
                             sciscore_samples_requested=16)
    elif kind == "text values":
        fields_["temperature"] = (fields_["temperature"].dims, np.full(fields_["temperature"].shape, "warm", object))
    fields_.to_netcdf(path)
    return path


UNREADABLE = ("random bytes", "truncated", "junk zarr")


@settings(max_examples=40, **SETTINGS)
@given(loud=st.booleans(), spec=DATA_FILES, command=st.sampled_from(["train", "diagnose reference", "diagnose samples"]))
def test_any_malformed_data_file_exits_2(cli_inputs, tmp_path, capfd, loud, spec, command):
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    path = write_data_file(spec, cli_inputs, folder)
    out = folder
    if command == "train":
        argv = ["--data", str(path), "--variable", "temperature", "--variable", "vorticity", "--steps", "2", "-q",
                "--device", "cpu", "-o", str(out / "run")]
    else:
        files = [str(path), str(cli_inputs / "other.nc")]
        if command.endswith("samples"):
            files.reverse()
        argv = ["--reference", files[0], "--samples", files[1], "--variable", "temperature", "vorticity", "-q",
                "-o", str(out / "report")]
    line = refuse(command.split()[0], _loud(argv, loud), capfd, watched=(tmp_path, cli_inputs))
    if spec[0] in UNREADABLE:
        assert path.name in line, line


# ---------------------------------------------------------------------------------------------
# Damaged checkpoints: what `generate --model` and `train --resume` are given
JSON = {"int": st.integers(-5, 5), "float": TOML["float"], "str": TEXT, "bool": st.booleans(),
        "list": st.lists(st.integers(0, 3), max_size=2), "object": st.dictionaries(st.sampled_from("ab"),
                                                                                   st.integers(), max_size=1)}


def json_type(value) -> str:
    for name, kind in (("bool", bool), ("int", int), ("float", float), ("str", str), ("list", list), ("object", dict)):
        if isinstance(value, kind):
            return name
    return "null"


def wrong_json(value) -> st.SearchStrategy:
    """A JSON value of another type than `value` (a float field takes an int: not drawn for one)."""
    kinds = {json_type(value)} | ({"int"} if isinstance(value, float) else set())
    return st.one_of([strategy for name, strategy in JSON.items() if name not in kinds])


def checkpoint_leaves(record: dict, resume: bool) -> list:
    """Key paths of config.json whose value is checked: every top-level field but 'format' (read only
    when 'format_version' is missing), the fields of the objects below, and one level into the maps."""
    paths = []
    for key, value in record.items():
        if key == "format" or value is None or (key == "training_config" and not resume):
            continue
        paths.append((key,))
        if key in ("network", "process", "normalizer", "grid"):
            paths += [(key, name) for name, inner in value.items() if inner is not None and not name.endswith("_attrs")]
        elif key in ("samples", "constant_means", "variable_attrs"):
            paths += [(key, name) for name in value]
        elif key == "training_config":
            paths += [(key, section, name) for section, table in value.items() for name, inner in table.items()
                      if inner is not None]
    return paths


@st.composite
def damage(draw, record: dict, resume: bool):
    """(what to do to a copy of the run directory, the file the error must name or None)."""
    kind = draw(st.sampled_from(["config value", "config element", "config field missing", "config not an object",
                                 "file junk", "file truncated", "file missing"]))
    if kind == "config value":
        path = draw(st.sampled_from(checkpoint_leaves(record, resume)))
        current = record
        for key in path:
            current = current[key]
        return (kind, path, draw(wrong_json(current))), None
    if kind == "config element":
        lists = [(key, name) for key in ("network", "normalizer", "grid") for name, value in record[key].items()
                 if isinstance(value, list)] + [("variables",)]
        path = draw(st.sampled_from(lists))
        current = record
        for key in path:
            current = current[key]
        index = draw(st.integers(0, len(current) - 1))
        element = draw(st.one_of(TEXT, st.lists(st.integers(), max_size=1)) if not isinstance(current[index], str)
                       else st.one_of(JSON["int"], JSON["list"], st.none()))
        return (kind, path, index, element), None
    if kind == "config field missing":
        return (kind, draw(st.sampled_from(["format_version", "step", "network", "process", "normalizer",
                                            "variables", "grid", *(["training_config"] if resume else [])]))), None
    if kind == "config not an object":
        return (kind, draw(st.one_of(st.binary(max_size=100), JSON["int"], JSON["str"], JSON["list"], st.none()))), \
            "config.json"
    names = ["config.json", "ema.safetensors", *(["model.safetensors", "training_state.pt"] if resume else [])]
    name = draw(st.sampled_from(names))
    if kind == "file junk":
        return (kind, name, draw(st.binary(max_size=300))), name
    if kind == "file truncated":
        return (kind, name, draw(st.floats(0, 1, exclude_max=True))), name
    return (kind, name), name


def damaged_copy(run: Path, folder: Path, spec: tuple) -> Path:
    copy = folder / "run"
    shutil.copytree(run, copy)
    config = copy / "config.json"
    record = json.loads(config.read_text())
    kind = spec[0]
    if kind in ("config value", "config element"):
        *parents, last = spec[1]
        target = record
        for key in parents:
            target = target[key]
        if kind == "config value":
            target[last] = spec[2]
        else:
            target[last][spec[2]] = spec[3]
        config.write_text(json.dumps(record))
    elif kind == "config field missing":
        del record[spec[1]]
        config.write_text(json.dumps(record))
    elif kind == "config not an object":
        config.write_bytes(spec[1] if isinstance(spec[1], bytes) else json.dumps(spec[1]).encode())
    elif kind == "file junk":
        (copy / spec[1]).write_bytes(spec[2])
    elif kind == "file truncated":
        whole = (copy / spec[1]).read_bytes()
        (copy / spec[1]).write_bytes(whole[:int(spec[2] * len(whole))])
    else:
        (copy / spec[1]).unlink()
    return copy


@settings(max_examples=50, **SETTINGS)
@given(loud=st.booleans(), resume=st.booleans(), data=st.data())
def test_any_damaged_checkpoint_exits_2(cli_inputs, tmp_path, capfd, loud, resume, data):
    record = json.loads((cli_inputs / "run" / "config.json").read_text())
    spec, name = data.draw(damage(record, resume), label="damage")
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    run = damaged_copy(cli_inputs / "run", folder, spec)
    if resume:
        argv = ["--resume", "-o", str(run), "--steps", "3", "-q", "--device", "cpu"]
    else:
        argv = ["--model", str(run), "-n", "2", "--solver", "ode-heun", "--steps", "2", "-q", "-o", str(folder / "gen.nc")]
    line = refuse("train" if resume else "generate", _loud(argv, loud), capfd, watched=(tmp_path, cli_inputs))
    if name is not None:
        assert name in line, line


# ---------------------------------------------------------------------------------------------
# Shard files that `merge` cannot join, and output paths no command can write
@settings(max_examples=20, **SETTINGS)
@given(spec=st.one_of(DATA_FILES, st.tuples(st.just("plain fields")), st.tuples(st.just("no such file"))),
       twice=st.booleans())
def test_any_malformed_shard_exits_2(cli_inputs, tmp_path, capfd, spec, twice):
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    if spec[0] == "plain fields":  # a valid NetCDF file that 'sciscore generate' did not write
        path = cli_inputs / "data.nc"
    elif spec[0] == "no such file":
        path = folder / "missing.nc"
    else:
        path = write_data_file(spec, cli_inputs, folder)
    refuse("merge", [str(path), *([str(path)] if twice else []), "-q", "-o", str(folder / "all.nc")], capfd,
           watched=(tmp_path, cli_inputs))


NAMES = st.text(st.characters(categories=["L", "N"]) | st.sampled_from("-_. "), min_size=1, max_size=12).filter(
    lambda name: name.strip(".") != "")
OUTPUTS = {  # how each command is told to write where it cannot
    "simulate": ("existing file", "folder", "under a file", "in a missing folder"),
    "generate": ("existing file", "folder", "under a file", "in a missing folder"),
    "train": ("existing file", "under a file"),
    "diagnose": ("existing file", "under a file"),
}


@settings(max_examples=30, **SETTINGS)
@given(command_kind=st.sampled_from([(c, k) for c, kinds in OUTPUTS.items() for k in kinds]), name=NAMES,
       other=NAMES)
def test_any_unusable_output_path_exits_2_naming_it(cli_inputs, tmp_path, capfd, command_kind, name, other):
    command, kind = command_kind
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    obstacle = folder / name
    if kind == "folder":
        obstacle.mkdir()
        output = obstacle
    elif kind == "in a missing folder":
        output = obstacle / other
    else:
        obstacle.write_text("a file in the way\n")
        output = obstacle if kind == "existing file" else obstacle / other
    argv = _fill(BASE[command][:-2], cli_inputs, folder)  # without its -o
    line = refuse(command, [*argv, "-o", str(output)], capfd, watched=(tmp_path, cli_inputs))
    assert name in line, line


# ---------------------------------------------------------------------------------------------
# Names that are not in the data or the model: variables and dimensions
NAME_OPTIONS = {
    "train": (["--variable"], ["--context-variable"], ["--sample-dim"], ["--spatial-dims", "y"],
              ["--spatial-dims", "{word}", "x"]),
    "generate": (["--variable"],),
    "diagnose": (["--variable"], ["--sample-dim"], ["--spatial-dims", "y"], ["--spatial-dims", "{word}", "x"]),
}
KNOWN_NAMES = {"temperature", "vorticity", "sample", "y", "x"}


@settings(max_examples=30, **SETTINGS)
@given(loud=st.booleans(), command_option=st.sampled_from([(c, tuple(o)) for c, options in NAME_OPTIONS.items() for o in options]),
       word=WORDS.filter(lambda word: word.strip() not in KNOWN_NAMES and not word.startswith("-")))
def test_any_unknown_variable_or_dimension_name_exits_2_naming_it(cli_inputs, tmp_path, capfd, loud, command_option, word):
    command, option = command_option
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    given_as = [part.format(word=word) for part in option] + ([] if "{word}" in "".join(option) else [word])
    line = refuse(command, _loud([*_fill(BASE[command], cli_inputs, folder), *given_as], loud), capfd,
                  watched=(tmp_path, cli_inputs))
    assert repr(word)[1:-1] in line or word in line, line
