"""Reproducible studies: one TOML and one Python module per study, run by `sciscore study`.

A study lives in `studies/NAME/` of a sciscore checkout:

    studies/NAME/study.toml   [study] description (one line), paper (authors, year, figure/table),
                              columns (the header of table.csv, in order);
                              [full] and [quick] tables: the keyword parameters of `run`
                              (quick: <= 10 minutes on 2 CPU cores, same checks, lower precision)
    studies/NAME/study.py     def run(params: dict, *, seed: int, out: pathlib.Path,
                                      device: str, progress: bool) -> StudyResult
    studies/NAME/README.md    the claim, how it is tested, the measured table and figures, a verdict
    studies/NAME/results/     the committed output of the full run (table.csv, NetCDF, figures)

`run` drives sciscore only through its public API (or CLI), draws every random number from
`seed`, writes its figures and any NetCDF of generated fields under `out`, and returns the rows
of the table; the runner (`sciscore.study.runner`, the engine of `sciscore study`) checks them
against the columns, writes `out/table.csv` and `out/run.json` and prints the headline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class StudyResult:
    """What one study run produced.

    rows: one dict per table row, keyed by the study's `columns` (every column present).
    headline: the finding in one or two sentences, with the numbers (printed by the runner).
    figures: paths of the figures written under `out`.
    verdicts: claim -> True/False/None (reproduced / refuted / not measured), for docs/studies.md.
    """

    rows: list[dict]
    headline: str
    figures: list[Path] = field(default_factory=list)
    verdicts: dict[str, bool | None] = field(default_factory=dict)


# after StudyResult: the runner imports it
from sciscore.study.runner import (Study, StudyDefinitionError, find_studies_dir, get_study,  # noqa: E402
                                   import_study_module, list_studies, load_study, read_table, run_study,
                                   study_names)

__all__ = ["StudyResult", "Study", "StudyDefinitionError", "find_studies_dir", "get_study", "import_study_module",
           "list_studies", "load_study", "read_table", "run_study", "study_names"]
