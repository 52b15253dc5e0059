"""Find, validate, list and run the studies of a sciscore checkout (the engine of `sciscore study`).

A study is a folder `studies/NAME/` holding `study.toml` and `study.py` (the contract is in
`sciscore.study`'s docstring). `run_study` imports `study.py` by path, calls its `run`, checks the
rows against the declared columns and writes `table.csv` and `run.json` under the output folder,
each through a temporary file and a rename: a run that fails or is interrupted leaves no table.

This module imports nothing heavy at the top (the command line lists studies without torch).
"""

from __future__ import annotations

import csv
import datetime as _dt
import importlib.util
import io
import json
import numbers
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from sciscore.errors import UserError
from sciscore.study import StudyResult

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

STUDIES_DIR = "studies"
DEFINITION = "study.toml"
MODULE = "study.py"
TABLE = "table.csv"
RUN_RECORD = "run.json"
RESULTS = "results"
QUICK = "quick"


class StudyDefinitionError(RuntimeError):
    """A study's code broke the contract (its rows miss a column, `run` returns something else):
    a bug in `studies/NAME/study.py`, not bad input from the user."""


@dataclass(frozen=True)
class Study:
    """One study, as declared by `studies/NAME/study.toml`.

    full, quick: the keyword parameters passed to `run` as a dict for the full and --quick runs.
    """

    name: str
    directory: Path
    description: str
    paper: str
    columns: tuple[str, ...]
    full: dict
    quick: dict

    @property
    def module_path(self) -> Path:
        return self.directory / MODULE

    def params(self, quick: bool) -> dict:
        return dict(self.quick if quick else self.full)

    def default_output(self, quick: bool) -> Path:
        """`studies/NAME/results/` for the full run, `studies/NAME/results/quick/` for --quick."""
        results = self.directory / RESULTS
        return results / QUICK if quick else results


# ---------------------------------------------------------------------------------------------
# Finding and validating studies
def find_studies_dir(start: str | os.PathLike | None = None) -> Path:
    """The `studies/` folder of `start` (default: the current directory) or of its nearest parent
    that has one."""
    here = Path(start if start is not None else Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / STUDIES_DIR).is_dir():
            return folder / STUDIES_DIR
    raise UserError(f"no '{STUDIES_DIR}/' folder in {here} or any folder above it; run from a sciscore checkout "
                    "or pass --studies-dir DIR")


def check_studies_dir(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"--studies-dir {path}: not a directory; give the studies/ folder of a sciscore checkout")
    return path


def load_study(directory: str | os.PathLike) -> Study:
    """Read and check `directory/study.toml`; a missing or wrongly typed key is named in one line."""
    directory = Path(directory)
    path = directory / DEFINITION
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise UserError(f"{directory} is not a study: it has no {DEFINITION}") from None
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path} is not valid TOML: {str(error).splitlines()[0]}; fix the file") from None

    def fail(message: str):
        raise UserError(f"{path}: {message}; fix the file (the keys are described in docs/studies.md)")

    for section in ("study", "full", "quick"):
        if section not in data:
            fail(f"the [{section}] table is missing")
        if not isinstance(data[section], dict):
            fail(f"'{section}' must be a table ([{section}]), got {data[section]!r}")
    extra = sorted(set(data) - {"study", "full", "quick"})
    if extra:
        fail(f"unknown top-level key(s) {', '.join(extra)} (allowed: [study], [full], [quick])")
    head = data["study"]
    for key in ("description", "paper"):
        if key not in head:
            fail(f"[study] {key} is missing")
        if not isinstance(head[key], str) or not head[key].strip():
            fail(f"[study] {key} must be a non-empty string, got {head[key]!r}")
    if "\n" in head["description"].strip():
        fail("[study] description must be one line")
    if "columns" not in head:
        fail("[study] columns is missing")
    columns = head["columns"]
    if not isinstance(columns, list) or not columns or not all(isinstance(c, str) and c for c in columns):
        fail(f"[study] columns must be a non-empty list of strings, got {columns!r}")
    if len(set(columns)) != len(columns):
        fail(f"[study] columns must not repeat a name, got {columns!r}")
    extra = sorted(set(head) - {"description", "paper", "columns"})
    if extra:
        fail(f"unknown key(s) {', '.join(extra)} in [study] (allowed: description, paper, columns)")
    if not (directory / MODULE).is_file():
        raise UserError(f"{directory} has a {DEFINITION} but no {MODULE}; a study needs both")
    return Study(name=directory.name, directory=directory, description=head["description"].strip(),
                 paper=head["paper"].strip(), columns=tuple(columns), full=data["full"], quick=data["quick"])


def study_names(studies_dir: str | os.PathLike) -> list[str]:
    """The names of the folders of `studies_dir` that have a study.toml, sorted (other folders,
    such as benchmarks, are not studies)."""
    return sorted(folder.name for folder in Path(studies_dir).iterdir()
                  if folder.is_dir() and (folder / DEFINITION).is_file())


def list_studies(studies_dir: str | os.PathLike) -> list[Study]:
    """Every study of `studies_dir`, sorted by name, each validated."""
    return [load_study(Path(studies_dir) / name) for name in study_names(studies_dir)]


def get_study(name: str, studies_dir: str | os.PathLike) -> Study:
    """The study `name` of `studies_dir` (only its own study.toml is read); an unknown name is an
    error listing the known ones."""
    names = study_names(studies_dir)
    if name not in names:
        raise UserError(f"no study {name!r} in {studies_dir} (known: {', '.join(names) or 'none'}); "
                        "see 'sciscore study list'")
    return load_study(Path(studies_dir) / name)


# ---------------------------------------------------------------------------------------------
# Running a study
def import_study_module(study: Study):
    """Import `study.py` by path (as module `sciscore_study_NAME`, registered in sys.modules so
    that its dataclasses work) and return the module; tests use it to reach a study's helpers."""
    module_name = "sciscore_study_" + "".join(c if c.isalnum() else "_" for c in study.name)
    spec = importlib.util.spec_from_file_location(module_name, study.module_path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def load_run_function(study: Study):
    """The `run` function of the study's `study.py`."""
    run = getattr(import_study_module(study), "run", None)
    if not callable(run):
        raise StudyDefinitionError(f"study {study.name!r}: {study.module_path} defines no function run(params, *, "
                                   "seed, out, device, progress)")
    return run


def _cell(value, study: Study, column: str):
    """A table value as written to CSV: str, int, float (finite or not), bool or None (empty)."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()  # numpy / torch scalars
    if value is None or isinstance(value, (str, bool, numbers.Integral)):
        return value
    if isinstance(value, numbers.Real):
        return float(value)
    raise StudyDefinitionError(f"study {study.name!r}: column {column!r} holds {type(value).__name__} {value!r}; "
                               "a table cell must be a string, a number, a bool or None (a bug in the study)")


def check_result(result, study: Study, out: Path) -> list[dict]:
    """Check what `run` returned against the contract; return the rows in column order."""
    where = f"study {study.name!r} ({study.module_path})"
    if not isinstance(result, StudyResult):
        raise StudyDefinitionError(f"{where}: run() returned {type(result).__name__}, not a sciscore.study.StudyResult")
    if not isinstance(result.headline, str) or not result.headline.strip():
        raise StudyDefinitionError(f"{where}: the headline must be a non-empty string, got {result.headline!r}")
    if not isinstance(result.rows, list) or not result.rows:
        raise StudyDefinitionError(f"{where}: run() returned no rows")
    rows = []
    for index, row in enumerate(result.rows):
        if not isinstance(row, dict) or set(row) != set(study.columns):
            got = sorted(row) if isinstance(row, dict) else type(row).__name__
            missing = [c for c in study.columns if not isinstance(row, dict) or c not in row]
            extra = sorted(set(row) - set(study.columns)) if isinstance(row, dict) else []
            raise StudyDefinitionError(
                f"{where}: row {index} has columns {got}, but study.toml declares {list(study.columns)} "
                f"(missing {missing}, extra {extra}); a bug in the study")
        rows.append({c: _cell(row[c], study, c) for c in study.columns})
    for figure in result.figures:
        if not Path(figure).is_file():
            raise StudyDefinitionError(f"{where}: the figure {figure} it reports was not written")
    for claim, verdict in result.verdicts.items():
        if not isinstance(claim, str) or verdict not in (True, False, None):
            raise StudyDefinitionError(f"{where}: verdict {claim!r}: {verdict!r} must be True, False or None")
    return rows


def _write_atomically(path: Path, text: str) -> None:
    from sciscore.fields.io import temporary_file

    tmp = temporary_file(path)
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as file:
            file.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def table_text(rows: list[dict], columns) -> str:
    """The CSV text of `rows` (floats in their shortest exact form; None as an empty cell)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: repr(v) if isinstance(v, float) else v for k, v in row.items()})
    return buffer.getvalue()


def git_commit(folder: Path) -> str | None:
    """The commit checked out at `folder` (with '-dirty' if tracked files changed), or None
    outside a git checkout or without git."""
    try:
        head = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def _relative(path: Path, out: Path) -> str:
    path = Path(path).resolve()
    try:
        return str(path.relative_to(out.resolve()))
    except ValueError:
        return str(path)


def run_study(study: Study, *, quick: bool = False, seed: int = 0, out: str | os.PathLike | None = None,
              device: str = "auto", progress: bool = True, overwrite: bool = False) -> StudyResult:
    """Run `study` (its [quick] or [full] parameters) and write `out/table.csv` and `out/run.json`.

    out: the output folder (default `study.default_output(quick)`); an existing table.csv there is
    an error unless `overwrite` (then the old table.csv and run.json are removed before the run, so
    a run that fails leaves none that would pair with new figures). device: 'auto', 'cpu' or
    'cuda', resolved here and passed on as 'cpu' or 'cuda...'. Returns the study's result.
    The caller sets torch's threads (the command line does: --threads)."""
    from sciscore import __version__
    from sciscore.devices import resolve_device
    from sciscore.fields.io import check_writable_dir

    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        raise UserError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    out = Path(out) if out is not None else study.default_output(quick)
    check_writable_dir(out)
    table, record = out / TABLE, out / RUN_RECORD
    if table.exists() and not overwrite:
        raise UserError(f"{table} already exists (a finished run); pass --overwrite to replace it, or -o another folder")
    resolved = str(resolve_device(device))
    run = load_run_function(study)
    commit = git_commit(study.directory)  # before anything is written: a full run rewrites tracked results
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create {out}: {error.strerror}; choose another output folder with -o") from None
    for stale in (table, record):
        stale.unlink(missing_ok=True)
    params = study.params(quick)
    started = _dt.datetime.now(_dt.timezone.utc)
    clock, cpu_clock = time.perf_counter(), time.process_time()
    result = run(params, seed=seed, out=out, device=resolved, progress=progress)
    wall, cpu = time.perf_counter() - clock, time.process_time() - cpu_clock
    rows = check_result(result, study, out)
    try:
        import torch

        threads = torch.get_num_threads()
    except ModuleNotFoundError:
        threads = None
    _write_atomically(table, table_text(rows, study.columns))
    _write_atomically(record, json.dumps({
        "study": study.name,
        "description": study.description,
        "paper": study.paper,
        "mode": QUICK if quick else "full",
        "params": params,
        "seed": seed,
        "device": resolved,
        "torch_threads": threads,
        "sciscore_version": __version__,
        "git_commit": commit,
        "started": started.isoformat(timespec="seconds"),
        "wall_seconds": round(wall, 3),
        "cpu_seconds": round(cpu, 3),
        "columns": list(study.columns),
        "table": TABLE,
        "figures": [_relative(f, out) for f in result.figures],
        "verdicts": dict(result.verdicts),
        "headline": result.headline,
    }, indent=2, default=str) + "\n")  # default: TOML dates in params
    return result


def read_table(path: str | os.PathLike) -> list[dict]:
    """The rows of a table.csv as dicts of strings (empty cell: '')."""
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))
