"""The checkpoint format (sciscore.checkpoint): typed record, field validation, migration of the
version-1 format, and the trainer's promise to leave the caller's global state alone."""

import copy
import json
import shutil

import pytest
import torch

from sciscore.checkpoint import (CONFIG, FORMAT_VERSION, SCHEMA, Checkpoint, checkpoint_from_dict, load_checkpoint,
                                 read_checkpoint)
from sciscore.errors import UserError
from sciscore.generate import load_model
from sciscore.sde import EDM
from sciscore.pretrained import default_model_path
from sciscore.train import train

from test_train import fields, tiny_config


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("checkpoint") / "run"
    train(tiny_config(3), path, dataset=fields())
    return path


def as_version_1(raw: dict) -> dict:
    """The config.json sciscore 0.1 wrote for the same run: no format_version, and
    training_config repeating network and process."""
    old = {k: v for k, v in raw.items() if k != "format_version"}
    old["format"] = "sciscore-checkpoint-1"
    old["training_config"] = {**raw["training_config"], "network": raw["network"], "process": raw["process"]}
    return old


def test_record_round_trips_and_is_typed(run_dir):
    raw = json.loads((run_dir / CONFIG).read_text())
    assert raw["format_version"] == FORMAT_VERSION == 2 and "network" not in raw["training_config"]
    record = read_checkpoint(run_dir)
    assert isinstance(record, Checkpoint) and record.to_dict() == raw
    assert record.step == 3 and record.network.channels == (8, 16) and record.grid.dims == ["y", "x"]
    # every written field is in the schema (monitor: best/ only; ema: post-hoc EMA checkpoints only;
    # sampler: set by whoever recommends one, as for the shipped model)
    assert set(raw) - {"format"} == set(SCHEMA) - {"monitor", "ema", "sampler"}


def test_version_1_is_migrated(run_dir, tmp_path):
    raw = json.loads((run_dir / CONFIG).read_text())
    assert checkpoint_from_dict(as_version_1(raw)).to_dict() == raw
    shipped = json.loads((default_model_path() / CONFIG).read_text())
    record = read_checkpoint(default_model_path())
    assert record.variables == shipped["variables"] and record.step == shipped["step"]
    assert record.network.to_dict() == shipped["network"]
    # all of the shipped process but EDM's sigma_data, a removed field (checkpoint format notes)
    assert record.process.to_dict() == {k: v for k, v in shipped["process"].items() if k != "sigma_data"}


def test_resume_from_a_version_1_run_directory_is_bit_exact(tmp_path):
    ds = fields()
    whole = train(tiny_config(6), tmp_path / "whole", dataset=ds)
    train(tiny_config(3), tmp_path / "split", dataset=ds)
    path = tmp_path / "split" / CONFIG
    path.write_text(json.dumps(as_version_1(json.loads(path.read_text()))))
    resumed = train(tiny_config(6), tmp_path / "split", dataset=ds, resume=True)
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in whole.history][3:]
    assert json.loads(path.read_text())["format_version"] == 2  # the next save writes the current version


BAD_FIELDS = [("step", "3"), ("step", -1), ("step", True), ("format_version", 2.0), ("variables", "s"),
              ("variables", []), ("network", [1]), ("network", {"channels": [8]}), ("process", {"name": "nope"}),
              ("normalizer", {"method": "standard"}), ("grid", {"dims": ["y"], "shape": [16, 16]}),
              ("grid", {"dims": ["y", "x"], "shape": [16, 16], "x": [0.0]}), ("constant_means", {"s": "0"}),
              ("variable_attrs", {"s": 1}), ("samples", {"train": 1.5}), ("monitor", 3),
              ("context_normalizer", 1), ("training_config", [])]


@pytest.mark.parametrize("name,value", BAD_FIELDS)
def test_every_field_is_checked_with_a_one_line_error_naming_it(run_dir, name, value):
    raw = json.loads((run_dir / CONFIG).read_text())
    raw[name] = value
    with pytest.raises(UserError) as error:
        checkpoint_from_dict(raw)
    message = str(error.value)
    assert f"field {name!r}" in message and "\n" not in message


@pytest.mark.parametrize("name", [n for n, (required, *_) in SCHEMA.items() if required and n != "format_version"])
def test_missing_required_field_is_named(run_dir, name):
    raw = json.loads((run_dir / CONFIG).read_text())
    del raw[name]
    with pytest.raises(UserError, match=f"field {name!r} is missing"):
        checkpoint_from_dict(raw)


def test_unknown_and_newer_formats_are_refused(run_dir):
    raw = json.loads((run_dir / CONFIG).read_text())
    with pytest.raises(UserError, match="version 3.*upgrade sciscore"):
        checkpoint_from_dict({**raw, "format_version": 3})
    old = as_version_1(raw)
    old["format"] = "something-else"
    with pytest.raises(UserError, match="unknown format 'something-else'"):
        checkpoint_from_dict(old)
    with pytest.raises(UserError, match="holds a list"):
        checkpoint_from_dict([raw])


def test_bad_field_on_disk_fails_load_in_one_line(run_dir, tmp_path):
    import shutil

    copy_dir = tmp_path / "copy"
    shutil.copytree(run_dir, copy_dir)
    raw = json.loads((copy_dir / CONFIG).read_text())
    raw["grid"]["shape"] = [16, "16"]
    (copy_dir / CONFIG).write_text(json.dumps(raw))
    with pytest.raises(UserError, match=r"field 'grid' is invalid \(grid.shape must be two positive sizes\)"):
        load_checkpoint(copy_dir)


def test_train_leaves_the_global_random_state_and_threads_alone(tmp_path):
    torch.manual_seed(1234)
    state, threads = torch.get_rng_state(), torch.get_num_threads()
    config = tiny_config(2, threads=threads + 1)
    first = train(copy.deepcopy(config), tmp_path / "a", dataset=fields())
    assert torch.equal(torch.get_rng_state(), state) and torch.get_num_threads() == threads
    torch.manual_seed(99)  # another caller state: the run is the same
    second = train(copy.deepcopy(config), tmp_path / "b", dataset=fields())
    assert [r["loss"] for r in first.history] == [r["loss"] for r in second.history]


def test_old_checkpoints_edm_sigma_data_is_dropped_and_changes_no_output(tmp_path):
    """Checkpoints written while the EDM process carried sigma_data (as the default models shipped
    before 2026-11-28 did: "sigma_data": 0.5 in "process") load as before: the key is dropped on
    read, and whatever its value the network's output is the same to the bit (the preconditioning
    reads network.sigma_data, which training derived from the data)."""
    source = default_model_path()
    raw = json.loads((source / CONFIG).read_text())
    assert raw["process"] == {"name": "edm", "sigma_min": 0.002, "sigma_max": 80.0, "rho": 7.0}  # written today
    outputs = []
    for value in (0.5, 0.7):
        old = tmp_path / f"sigma_data_{value}"
        shutil.copytree(source, old)
        (old / CONFIG).write_text(json.dumps({**raw, "process": {**raw["process"], "sigma_data": value}}))
        record = read_checkpoint(old)
        assert record.process == EDM(sigma_min=0.002, sigma_max=80.0, rho=7.0)
        assert "sigma_data" not in record.process.to_dict() and record.network.sigma_data == raw["network"]["sigma_data"]
    x = torch.randn(2, *load_model(source, device="cpu").shape, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.05, 3.0])
    with torch.no_grad():
        outputs = [load_model(path, device="cpu").network(x, t)
                   for path in (source, tmp_path / "sigma_data_0.5", tmp_path / "sigma_data_0.7")]
    assert torch.equal(outputs[0], outputs[1]) and torch.equal(outputs[0], outputs[2])
    assert torch.isfinite(outputs[0]).all()
