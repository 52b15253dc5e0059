"""Run the `sciscore` command line in-process and check the bad-input guarantee (docs/cli.md, "Bad
input"): exit status 2, exactly one line on stderr, no traceback, nothing written. Used by the
catalogue of bad inputs (test_cli_catalogue.py) and its property-based twin (test_cli_property.py)."""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

from sciscore.cli import main


def listing(root: Path) -> list:
    """Every file and folder under `root` (hidden ones included) with its size, sorted."""
    return sorted((str(p.relative_to(root)), p.stat().st_size if p.is_file() else -1) for p in root.rglob("*"))


def refuse(command: str, argv: list, capture, watched=()) -> str:
    """Run `sciscore COMMAND ARGV` in-process and assert that it refuses the input as promised:
    exit status 2; stdout empty; stderr exactly one line ``sciscore COMMAND: error: ...`` (no
    traceback, no warning, no progress bar before it); nothing added, removed or resized under any
    of `watched`. `capture` is pytest's capfd (or capsys) fixture; returns the error line.

    Logging goes to stderr at the level `main` sets in a fresh process (INFO, WARNING with -q):
    there `logging.basicConfig` does it, which does nothing under pytest, whose own handlers are
    installed; so an info message or warning before the error is an extra line, as a user sees it."""
    capture.readouterr()  # drop what came before
    before = {root: listing(Path(root)) for root in watched}
    quiet = "-q" in argv or "--quiet" in argv
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root_logger = logging.getLogger()
    level = root_logger.level
    root_logger.addHandler(handler)
    root_logger.setLevel(logging.WARNING if quiet else logging.INFO)
    try:
        status = main([command, *argv])
    finally:
        root_logger.removeHandler(handler)
        root_logger.setLevel(level)
    out, err = capture.readouterr()
    lines = err.splitlines()
    shown = f"sciscore {command} {argv!r}\nexit status {status}\nstderr:\n{err}\nstdout:\n{out}"
    assert status == 2, shown
    # "sciscore study run: error: ..." for an option of a command's action
    assert len(lines) == 1 and err.endswith("\n") and re.match(rf"sciscore {command}( \w+)?: error: ", lines[0]), shown
    assert "Traceback" not in err, shown
    assert out == "", shown
    for root, files in before.items():
        assert listing(Path(root)) == files, f"{shown}\nchanged under {root}"
    return lines[0]
