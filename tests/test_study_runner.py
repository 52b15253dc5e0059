"""`sciscore study`: finding, validating, listing and running studies (sciscore.study.runner and
the command), checked on the checkout's studies/ and on throwaway studies written into tmp_path."""

import json
import textwrap
from pathlib import Path

import pytest

from sciscore.cli import main
from sciscore.errors import UserError
from sciscore.study import (StudyDefinitionError, find_studies_dir, get_study, list_studies, load_study, read_table,
                            run_study)

REPO = Path(__file__).resolve().parents[1]
STUDIES = REPO / "studies"

TOY_TOML = """
[study]
description = "a throwaway study for the runner's tests"
paper = "nobody 2026, Table 1"
columns = ["name", "value", "count", "note"]

[full]
n = 5

[quick]
n = 2
"""

# rows with an exact float (0.1 + 0.2, whose shortest repr has 17 digits), an integer, None and a
# comma inside a string: a CSV round trip must give all of them back exactly
TOY_PY = """
import numpy as np
from sciscore.study import StudyResult


def run(params, *, seed, out, device, progress):
    rng = np.random.default_rng(seed)
    (out / "figure.png").write_bytes(b"not really a png")
    rows = [{"name": f"row {i}, of {params['n']}", "value": float(rng.standard_normal()), "count": np.int64(i),
             "note": None} for i in range(params["n"])]
    rows[0]["value"] = 0.1 + 0.2
    return StudyResult(rows=rows, headline=f"{params['n']} rows, device {device}, progress {progress}",
                       figures=[out / "figure.png"], verdicts={"the toy claim holds": True, "unmeasured": None})
"""


def write_study(root: Path, name: str = "toy", toml: str = TOY_TOML, py: str = TOY_PY) -> Path:
    folder = root / "studies" / name
    folder.mkdir(parents=True)
    (folder / "study.toml").write_text(textwrap.dedent(toml))
    (folder / "study.py").write_text(textwrap.dedent(py))
    return folder


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return err


# ---------------------------------------------------------------------------------------------
# The checkout's studies
def test_list_names_every_study_folder_with_a_study_toml(capsys):
    expected = sorted(p.parent.name for p in STUDIES.glob("*/study.toml"))
    assert "coupled-bypass" in expected
    assert main(["study", "list", "--studies-dir", str(STUDIES)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == expected
    for line, name in zip(lines, expected):
        assert load_study(STUDIES / name).description in line
    # aligned: every description starts in the same column
    assert len({line.index(load_study(STUDIES / name).description) for line, name in zip(lines, expected)}) == 1
    # folders without study.toml (benchmarks) are not studies
    assert "performance" not in expected


def test_list_finds_studies_from_a_subfolder(monkeypatch, capsys):
    monkeypatch.chdir(STUDIES / "coupled-bypass")
    assert find_studies_dir() == STUDIES
    assert main(["study", "list"]) == 0
    assert "coupled-bypass" in capsys.readouterr().out


def test_every_study_toml_of_the_checkout_is_valid():
    for study in list_studies(STUDIES):
        assert study.full.keys() == study.quick.keys(), study.name
        assert study.default_output(quick=False) == STUDIES / study.name / "results"
        assert study.default_output(quick=True) == STUDIES / study.name / "results" / "quick"


# ---------------------------------------------------------------------------------------------
# Bad input: exit 2, one line, no traceback
def test_unknown_study_lists_the_known_ones(capsys):
    assert main(["study", "run", "no-such-study", "--studies-dir", str(STUDIES)]) == 2
    err = one_error_line(capsys)
    assert "no-such-study" in err and "coupled-bypass" in err


def test_missing_studies_dir(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["study", "list"]) == 2
    assert "--studies-dir" in one_error_line(capsys)
    assert main(["study", "list", "--studies-dir", str(tmp_path / "nowhere")]) == 2
    assert "not a directory" in one_error_line(capsys)


@pytest.mark.parametrize("old, new, named", [
    ('columns = ["name", "value", "count", "note"]', 'columns = "name"', "columns"),
    ('columns = ["name", "value", "count", "note"]', "", "columns is missing"),
    ('description = "a throwaway study for the runner\'s tests"', "description = 3", "description"),
    ('paper = "nobody 2026, Table 1"', "", "paper is missing"),
    ("[quick]\nn = 2", "", "[quick]"),
    ('paper = "nobody 2026, Table 1"', 'paper = "x"\npapers = "y"', "papers"),
    ('columns = ["name", "value", "count", "note"]', 'columns = ["name", "name"]', "repeat"),
    ("[full]", "[full", "not valid TOML"),
])
def test_bad_study_toml_names_the_file_and_key(tmp_path, capsys, old, new, named):
    assert old in TOY_TOML
    write_study(tmp_path, toml=TOY_TOML.replace(old, new))
    assert main(["study", "list", "--studies-dir", str(tmp_path / "studies")]) == 2
    err = one_error_line(capsys)
    assert "study.toml" in err and named in err


def test_a_broken_study_fails_list_but_not_the_run_of_another(tmp_path, capsys):
    write_study(tmp_path)
    write_study(tmp_path, name="broken", toml=TOY_TOML.replace("[quick]", "[quik]"))
    studies = str(tmp_path / "studies")
    assert main(["study", "list", "--studies-dir", studies]) == 2
    assert "broken" in one_error_line(capsys)
    assert main(["study", "run", "toy", "--studies-dir", studies, "-o", str(tmp_path / "out"), "-q"]) == 0


def test_study_without_study_py(tmp_path):
    folder = write_study(tmp_path)
    (folder / "study.py").unlink()
    with pytest.raises(UserError, match="no study.py"):
        load_study(folder)


def test_existing_output_needs_overwrite(tmp_path, capsys):
    write_study(tmp_path)
    out = tmp_path / "out"
    command = ["study", "run", "toy", "--studies-dir", str(tmp_path / "studies"), "-o", str(out), "-q"]
    assert main(command) == 0
    first = (out / "run.json").read_text()
    capsys.readouterr()
    assert main(command) == 2
    err = one_error_line(capsys)
    assert "table.csv" in err and "--overwrite" in err
    assert (out / "run.json").read_text() == first  # untouched
    assert main(command + ["--overwrite", "--seed", "3"]) == 0
    assert json.loads((out / "run.json").read_text())["seed"] == 3


# ---------------------------------------------------------------------------------------------
# Running: table.csv and run.json
def test_run_writes_the_table_and_the_run_record(tmp_path, capsys):
    write_study(tmp_path)
    out = tmp_path / "out"
    assert main(["study", "run", "toy", "--quick", "--seed", "7", "-o", str(out), "--device", "cpu",
                 "--studies-dir", str(tmp_path / "studies"), "-q"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed == ["2 rows, device cpu, progress False", f"table: {out / 'table.csv'}"]
    # the CSV round trip gives back exactly what run() returned (same seed, same draws)
    import numpy as np

    rng = np.random.default_rng(7)
    values = [float(rng.standard_normal()) for _ in range(2)]
    values[0] = 0.1 + 0.2
    rows = read_table(out / "table.csv")
    assert (out / "table.csv").read_text().splitlines()[0] == "name,value,count,note"
    assert [r["name"] for r in rows] == ["row 0, of 2", "row 1, of 2"]
    assert [float(r["value"]) for r in rows] == values  # exact, not approximate
    assert [int(r["count"]) for r in rows] == [0, 1]
    assert [r["note"] for r in rows] == ["", ""]
    record = json.loads((out / "run.json").read_text())
    assert record["study"] == "toy" and record["mode"] == "quick"
    assert record["params"] == {"n": 2} and record["seed"] == 7 and record["device"] == "cpu"
    assert record["figures"] == ["figure.png"] and record["table"] == "table.csv"
    assert record["verdicts"] == {"the toy claim holds": True, "unmeasured": None}
    assert record["headline"] == printed[0]
    assert record["columns"] == ["name", "value", "count", "note"]
    from sciscore import __version__

    assert record["sciscore_version"] == __version__
    assert record["wall_seconds"] >= 0 and record["cpu_seconds"] >= 0 and record["started"].endswith("+00:00")
    assert "git_commit" in record
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_full_run_defaults_to_results_and_quick_to_results_quick(tmp_path):
    study = get_study("toy", write_study(tmp_path).parent)
    result = run_study(study, quick=False, seed=0, device="cpu", progress=False)
    assert len(result.rows) == 5
    assert len(read_table(study.directory / "results" / "table.csv")) == 5
    run_study(study, quick=True, seed=0, device="cpu", progress=False)
    assert len(read_table(study.directory / "results" / "quick" / "table.csv")) == 2
    assert json.loads((study.directory / "results" / "run.json").read_text())["mode"] == "full"


BROKEN = {
    "a row misses a column": (TOY_PY.replace('"note": None}', "}"), "missing ['note']"),
    "a row has an extra column": (TOY_PY.replace('"note": None}', '"note": None, "extra": 1}'), "extra ['extra']"),
    "not a StudyResult": (TOY_PY.replace("return StudyResult(", "return dict("), "not a sciscore.study.StudyResult"),
    "a figure not written": (TOY_PY.replace('figures=[out / "figure.png"]', 'figures=[out / "absent.png"]'),
                             "absent.png"),
    "a cell that is a list": (TOY_PY.replace('"note": None}', '"note": [1]}'), "column 'note' holds list"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_study_that_breaks_the_contract_is_named_and_writes_no_table(tmp_path, capsys, case):
    source, message = BROKEN[case]
    assert source != TOY_PY
    write_study(tmp_path, py=source)
    out = tmp_path / "out"
    study = get_study("toy", tmp_path / "studies")
    with pytest.raises(StudyDefinitionError, match="toy") as raised:
        run_study(study, out=out, device="cpu", progress=False)
    assert message in str(raised.value)
    assert not (out / "table.csv").exists() and not (out / "run.json").exists()
    # the command: one line naming the study, exit 1 (a bug in the study, not bad input)
    assert main(["study", "run", "toy", "-o", str(out), "--studies-dir", str(tmp_path / "studies"), "-q"]) == 1
    assert "'toy'" in one_error_line(capsys)


def test_run_record_names_the_commit_of_the_checkout(tmp_path):
    import subprocess

    folder = write_study(tmp_path)
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "studies"], check=True)
    subprocess.run(git + ["commit", "-qm", "toy"], check=True)
    head = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    study = get_study("toy", tmp_path / "studies")
    run_study(study, device="cpu", progress=False)  # writes (untracked) studies/toy/results/
    assert json.loads((folder / "results" / "run.json").read_text())["git_commit"] == head
    subprocess.run(git + ["add", "studies"], check=True)
    subprocess.run(git + ["commit", "-qm", "results"], check=True)
    head = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    run_study(study, device="cpu", progress=False, overwrite=True)  # rewrites tracked results: still clean
    assert json.loads((folder / "results" / "run.json").read_text())["git_commit"] == head
    (folder / "study.toml").write_text((folder / "study.toml").read_text() + "\n")
    run_study(study, device="cpu", progress=False, overwrite=True)
    assert json.loads((folder / "results" / "run.json").read_text())["git_commit"] == head + "-dirty"
