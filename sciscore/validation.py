"""Checks of option values where they enter: declared types of config dataclasses, number ranges.

A TOML file, a recipe or a checkpoint's config.json can hold any JSON-like value; the config
dataclasses call `check_types` first in `__post_init__`, so a value of the wrong type (``steps =
"ten"``) is named by its key in one `UserError` line instead of failing deep in the code. Floats
must be finite. The `argparse` types below do the same for command-line options.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import numbers
import types
import typing

from sciscore.errors import UserError


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


_TESTS = {
    int: (_is_int, "an integer"),
    float: (_is_number, "a finite number"),
    bool: (lambda v: isinstance(v, bool), "true or false"),
    str: (lambda v: isinstance(v, str), "a string"),
    list: (lambda v: isinstance(v, (list, tuple)), "a list"),
    tuple: (lambda v: isinstance(v, (list, tuple)), "a list"),
    dict: (lambda v: isinstance(v, dict), "a table"),
    type(None): (lambda v: v is None, "unset"),
}


def _alternatives(hint) -> tuple:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return typing.get_args(hint)
    return (typing.get_origin(hint) or hint,)


def check_types(instance, where: str) -> None:
    """Raise a `UserError` naming ``where.key`` for the first field of the dataclass `instance`
    whose value is not of its declared type (int excludes bool; float accepts finite ints)."""
    hints = typing.get_type_hints(type(instance))
    for f in dataclasses.fields(instance):
        value = getattr(instance, f.name)
        options = [_TESTS[t] for t in _alternatives(hints[f.name]) if t in _TESTS]
        if options and not any(test(value) for test, _ in options):
            what = " or ".join(name for _, name in options)
            raise UserError(f"{where}.{f.name} must be {what}, got {value!r}")


def check_names(value, key: str) -> None:
    """A list of strings (variable names, paths)."""
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise UserError(f"{key} must be a list of strings, got {value!r}")


def check_numbers(value, key: str, allow_none: bool = False) -> None:
    """A list of finite numbers (with `allow_none`, entries may also be None)."""
    if not isinstance(value, (list, tuple)) or not all(_is_number(v) or (allow_none and v is None) for v in value):
        what = "finite numbers or null" if allow_none else "finite numbers"
        raise UserError(f"{key} must be a list of {what}, got {value!r}")


def require(checks, where: str) -> None:
    """Raise a `UserError` with the message of the first failed (ok, message) pair."""
    for ok, message in checks:
        if not ok:
            raise UserError(f"{where}: {message}")


# ---------------------------------------------------------------------------------------------
# argparse types: a bad value becomes argparse's one-line usage error (exit 2)
def integer(low: int | None = None, high: int | None = None):
    """An argparse type: an integer in [low, high] (either bound optional)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if low is not None and value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"expected an integer <= {high}, got {value}")
        return value

    return parse


def number(low: float | None = None, high: float | None = None, low_open: bool = False, high_open: bool = False):
    """An argparse type: a finite number in the interval from low to high (open ends optional)."""
    bounds = (f"{'(' if low_open or low is None else '['}{'-inf' if low is None else low}, "
              f"{'inf' if high is None else high}{')' if high_open or high is None else ']'}")

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        ok = math.isfinite(value)
        if ok and low is not None:
            ok = value > low if low_open else value >= low
        if ok and high is not None:
            ok = value < high if high_open else value <= high
        if not ok:
            raise argparse.ArgumentTypeError(f"expected a finite number in {bounds}, got {text!r}")
        return value

    return parse


def check_guidance_interval(interval) -> tuple[float, float] | None:
    """A guidance interval of noise levels: (sigma_lo, sigma_hi) with 0 <= sigma_lo < sigma_hi
    (sigma_hi may be inf), or None (every noise level)."""
    if interval is None:
        return None
    try:
        low, high = (float(v) for v in interval)
    except (TypeError, ValueError):
        raise UserError(f"guidance interval must be two noise levels (sigma_lo, sigma_hi), got {interval!r}") from None
    if not 0.0 <= low < high:
        raise UserError(f"guidance interval must satisfy 0 <= sigma_lo < sigma_hi, got ({low}, {high})")
    return (low, high)


def noise_interval(text: str) -> tuple[float, float]:
    """An argparse type: 'LO,HI', a guidance interval (`check_guidance_interval`; HI may be 'inf')."""
    try:
        low, high = (float(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two noise levels LO,HI (e.g. 0,3), got {text!r}") from None
    try:
        return check_guidance_interval((low, high))
    except UserError:
        raise argparse.ArgumentTypeError(f"expected 0 <= LO < HI, got {text!r}") from None


POSITIVE = integer(1)
NON_NEGATIVE = integer(0)
SEED = integer(0, 2**63 - 1)
