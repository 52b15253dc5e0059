"""`sciscore --help` and every subcommand's `--help` parse and print without importing the heavy
libraries (torch, xarray, dask, ...): start-up stays well under a second. Checked by the modules the
help imports, in a fresh interpreter, not by timing."""

import json
import subprocess
import sys

import pytest

from sciscore.cli import SUBCOMMANDS

HEAVY = ("torch", "torchsde", "xarray", "dask", "numpy", "pandas", "scipy", "netCDF4", "h5netcdf", "zarr",
         "matplotlib", "safetensors", "tqdm")

# One fresh interpreter runs every help in turn and records, after each, the heavy top-level modules
# loaded so far (so an import by one subcommand's help is attributed to it) and the help text.
PROBE = """
import contextlib, io, json, sys
from sciscore.cli import main
heavy = set(json.loads(sys.argv[1]))
report = []
for command in json.loads(sys.argv[2]):
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        try:
            main(command + ["--help"])
            status = None
        except SystemExit as stop:
            status = stop.code
    loaded = sorted({name.split(".")[0] for name in sys.modules} & heavy)
    report.append({"command": command, "status": status, "loaded": loaded, "help": text.getvalue()})
print(json.dumps(report))
"""


NESTED = (("study", "list"), ("study", "run"))  # subcommands with actions of their own


@pytest.fixture(scope="module")
def help_report():
    commands = [[]] + [[name] for name in SUBCOMMANDS] + [list(command) for command in NESTED]
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(HEAVY), json.dumps(commands)],
                          capture_output=True, text=True, check=True)
    return {" ".join(entry["command"]): entry for entry in json.loads(done.stdout)}


@pytest.mark.parametrize("command", [""] + list(SUBCOMMANDS) + [" ".join(command) for command in NESTED])
def test_help_imports_no_heavy_module(help_report, command):
    entry = help_report[command]
    assert entry["status"] == 0
    assert entry["loaded"] == [], f"'sciscore {command} --help' imported {entry['loaded']}"
    assert entry["help"].startswith("usage: sciscore")


def test_help_lists_every_subcommand_and_the_generate_defaults(help_report):
    top = help_report[""]["help"]
    assert all(name in top for name in SUBCOMMANDS)
    from sciscore.generate.defaults import DEFAULT_GRID, DEFAULT_SOLVER
    from sciscore.sde.solvers import default_steps

    generate = " ".join(help_report["generate"]["help"].split())  # argparse wraps lines
    squeezed = "".join(generate.split())  # argparse may break "ode-heun" after its hyphen
    assert f"recommendedsampler,itsconfig.json'sampler',withitssteps,gridandoptions;else{DEFAULT_SOLVER})" in squeezed
    assert f"else{DEFAULT_GRID})" in squeezed
    assert f"{DEFAULT_SOLVER}on{DEFAULT_GRID}:{default_steps(DEFAULT_SOLVER, DEFAULT_GRID)})" in squeezed


def test_library_names_still_resolve_lazily():
    import sciscore.generate as generate
    from sciscore.generate import defaults, model

    assert generate.DEFAULT_SOLVER == defaults.DEFAULT_SOLVER == model.DEFAULT_SOLVER
    assert generate.load_model is model.load_model
    with pytest.raises(AttributeError):
        generate.no_such_name  # noqa: B018


def test_subpackages_are_attributes_of_a_plain_import():
    """README: after `import sciscore`, `sciscore.diagnostics.compare` works and the `.reynolds`
    accessor is registered by touching `sciscore.diagnostics` (fresh interpreter)."""
    code = ("import sciscore, sys; assert 'xarray' not in sys.modules; "
            "import numpy as np, xarray as xr; f = sciscore.diagnostics.compare; "
            "da = xr.DataArray(np.arange(8.0).reshape(2, 2, 2), dims=('sample', 'y', 'x')); "
            "print(float(da.reynolds.spatial_mean()[1]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "5.5"
