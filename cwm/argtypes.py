"""Argument types shared by the command line and the demos: points, moves and positive numbers
parsed from text, each raising :class:`argparse.ArgumentTypeError` with one clear line.

Nothing here imports torch (``cwm --help`` and argument errors stay fast).
"""
from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from typing import Any


def _shown(text: str, limit: int = 40) -> str:
    """A user's argument quoted and escaped (so an error stays on one line), cut at ``limit``."""
    text = str(text)
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", re.ASCII)


def _numbers(text: str, count: int, what: str, form: str) -> tuple[float, ...]:
    """``count`` comma-separated finite decimal numbers (ASCII only: no nan, inf, hex or "1_0")."""
    text, shown = str(text), _shown(text)
    parts = [s.strip() for s in text.split(",")]
    if len(parts) != count:
        raise argparse.ArgumentTypeError(f"expected {what} as {form}, got {shown}")
    if not all(_NUMBER.fullmatch(s) for s in parts):
        raise argparse.ArgumentTypeError(f"expected {what} as {form} with decimal numbers, got {shown}")
    values = tuple(float(s) for s in parts)
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected {what} as {form} with finite numbers, got {shown}")
    return values


def parse_point(text: str) -> tuple[float, float]:
    """``"X,Y"`` (pixels, x = column) -> ``(x, y)``; junk raises a clean argparse error."""
    x, y = _numbers(text, 2, "a point", "X,Y")
    return (x, y)


def parse_move(text: str) -> tuple[tuple[float, float], tuple[float, float]]:
    """``"X,Y,DX,DY"`` -> ``((x, y), (dx, dy))``: move the patch at (x, y) by (dx, dy) pixels."""
    x, y, dx, dy = _numbers(text, 4, "a move", "X,Y,DX,DY")
    return ((x, y), (dx, dy))


def _checked(text: str, convert: Callable[[str], Any], ok: Callable[[Any], bool], what: str):
    try:
        value = convert(text)
    except ValueError:
        value = None
    if value is None or not ok(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {_shown(text)}")
    return value


def positive_int(text: str) -> int:
    return _checked(text, int, lambda v: v >= 1, "a positive integer")


def unit_fraction(text: str) -> float:
    return _checked(text, float, lambda v: 0 < v <= 1, "a number in (0, 1]")


def positive_float(text: str) -> float:
    return _checked(text, float, lambda v: math.isfinite(v) and v > 0, "a positive number")
