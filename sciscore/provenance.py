"""Provenance of the files sciscore writes: software versions, the checkout's git commit, and the
invocation (the `sciscore` command line, or the library call when used from Python).

The command line is recorded by the `sciscore` command itself (`command_line`, process-wide state
that only the CLI sets, for the duration of a command); library functions name their own call instead, so a notebook's
file says `sciscore.generate.generate_file(...)`, not `ipykernel_launcher.py -f ...`.
"""

from __future__ import annotations

import datetime as _dt
import functools
import subprocess
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

from sciscore import __version__

_command_line: str | None = None


@contextmanager
def command_line(argv: list[str]):
    """Used by `sciscore.cli.main` around a command: what the user typed after `sciscore` is the
    invocation of every file written inside the block (restored afterwards)."""
    global _command_line
    previous, _command_line = _command_line, " ".join(["sciscore", *argv])
    try:
        yield
    finally:
        _command_line = previous


def invocation(call: str | None = None) -> str:
    """The `sciscore ...` command line when run from the command, else `call` (e.g.
    "sciscore.generate.generate_file(n=32, seed=0)"), else "python (sciscore API)"."""
    return _command_line or call or "python (sciscore API)"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the sciscore checkout this package is imported from ("-dirty" appended when
    tracked files differ from it), or None for an installed wheel / no git."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        run = functools.partial(subprocess.run, cwd=root, capture_output=True, text=True, timeout=10)
        head = run(["git", "rev-parse", "HEAD"])
        if head.returncode != 0:
            return None
        dirty = run(["git", "status", "--porcelain", "--untracked-files=no"])
        return head.stdout.strip() + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def software_attrs() -> dict:
    """Global attributes naming the software: sciscore, torch and Python package versions and the
    checkout's git commit when there is one (absent keys are left out, never written empty)."""
    attrs = {"sciscore_version": __version__}
    for package in ("torch", "numpy", "xarray"):
        version = _version(package)
        if version:
            attrs[f"sciscore_{package}_version"] = version
    commit = git_commit()
    if commit:
        attrs["sciscore_git_commit"] = commit
    return attrs


def history_line(call: str | None = None) -> str:
    """One CF `history` line: UTC time stamp, the invocation and the sciscore version."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{stamp}: {invocation(call)} (sciscore {__version__})"


__all__ = ["command_line", "invocation", "git_commit", "software_attrs", "history_line"]
