"""Pieces every subcommand shares: the parser class, argument types, outputs and progress.

Nothing here imports torch: ``cwm --help`` and argument errors stay fast.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import numpy as np

from cwm.argtypes import parse_move, parse_point, positive_float, positive_int, unit_fraction  # noqa: F401
from cwm.cli.outputs import Outputs, run_outputs  # noqa: F401  (re-exported for the subcommands)
from cwm.errors import InputError, did_you_mean, unknown_options  # noqa: F401  (moved to cwm.errors)

if TYPE_CHECKING:  # annotations only: importing these costs torch and tqdm
    from tqdm import tqdm

    from cwm.predictor import CWMPredictor

#: Where outputs go when ``-o`` is not given: ``cwm_out/<input stem>_<command>/``.
DEFAULT_OUT_ROOT = Path("cwm_out")


class UsageError(Exception):
    """A command-line mistake found after parsing (wrong number of inputs, conflicting flags)."""


# ------------------------------------------------------------------------------------ parsers
class CWMArgumentParser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line, ``cwm: error: ...``, with a "did you mean" hint.

    Python 3.11's argparse has no ``suggest_on_error``, so invalid choices (unknown subcommands,
    ``--format mp5``) get their hint here; unknown options get theirs in :func:`unknown_options`.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Values such as "-1,3" (a point) start with "-<digit>": read them as values, not as
        # unknown options (no option of ours starts with a digit). argparse only does this for
        # plain negative numbers.
        self._negative_number_matcher = re.compile(r"^-\.?\d")

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        message = " ".join(_with_choice_hint(message).split())  # one line, whatever the user typed
        command = self.prog.split(" ", 1)[1] if " " in self.prog else ""
        where = f" (see `{self.prog} --help`)" if command else " (see `cwm --help`)"
        self.exit(2, f"cwm: error: {f'{command}: ' if command else ''}{message}{where}\n")


def _with_choice_hint(message: str) -> str:
    m = re.search(r"invalid choice: '(.*?)' \(choose from (.*)\)", message)
    if not m:
        return message
    choices = re.findall(r"'([^']*)'", m.group(2))
    hint = did_you_mean(m.group(1), choices, cutoff=0.5)
    what = message.split(":", 1)[0]
    if what in ("argument COMMAND", "argument ACTION"):  # the subcommand words
        return f"unknown command '{m.group(1)}'{hint} (commands: {', '.join(choices)})"
    return f"{what}: unknown choice '{m.group(1)}'{hint} (choose from {', '.join(choices)})"


def add_command(subparsers, name: str, summary: str, examples: str, description: str = "",
                **kwargs) -> argparse.ArgumentParser:
    """Register subcommand ``name`` with a help line, a description and copy-paste examples."""
    return subparsers.add_parser(
        name, help=summary, description=(description or summary), allow_abbrev=False,
        epilog="examples:\n" + "\n".join(f"  {line}" for line in examples.strip().splitlines()),
        formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)


def add_output_options(p: argparse.ArgumentParser, model: bool = True) -> None:
    """``-o/--out``, ``--overwrite``, ``--quiet`` and (for model commands) ``--weights``, ``--device``."""
    g = p.add_argument_group("output")
    g.add_argument("-o", "--out", metavar="DIR", type=Path,
                   help=f"output folder (default: {DEFAULT_OUT_ROOT}/<input name>_<command>/)")
    g.add_argument("--overwrite", action="store_true", help="replace existing output files")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar; print only the paths written")
    if model:
        m = p.add_argument_group("model")
        m.add_argument("--weights", default="default", metavar="W",
                       help="registered name (`cwm weights list`), weights folder, .safetensors or "
                            "official .pth (default: the embedded model)")
        m.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: CUDA if available)")


def check_inside(points: Iterable[tuple[float, float]], size: tuple[int, int], flag: str) -> None:
    """Raise InputError naming ``flag`` for a point outside an image of ``size = (H, W)``."""
    h, w = size
    for x, y in points:
        if not (0 <= x <= w - 1 and 0 <= y <= h - 1):
            raise InputError(f"{flag} {x:g},{y:g} is outside the {w}x{h} image "
                             f"(x in 0..{w - 1}, y in 0..{h - 1})")


# ------------------------------------------------------------------------------------ inputs
def default_out(inputs: Sequence[str | os.PathLike], command: str) -> Path:
    return DEFAULT_OUT_ROOT / f"{Path(inputs[0]).stem}_{command}"


def check_size(size: int | None, shape: Sequence[int]) -> None:
    """Refuse a ``--size`` larger than the input's longer side (``shape`` = ``(H, W, ...)``).

    cwm never enlarges frames: upscaling adds no detail to the model's view and multiplies the
    size of every output (``--size 8000`` on a 176x144 clip would write 419 MB per raw file).
    """
    h, w = shape[:2]
    if size is not None and size > max(h, w):
        raise InputError(f"--size {size} is larger than the {w}x{h} input; --size only shrinks frames "
                         f"(use --size {max(h, w)} or less, or leave it out)")


def fitted(shape: Sequence[int], size: int | None) -> tuple[int, int]:
    """``(H, W)`` of a ``shape = (H, W, ...)`` frame after :func:`fit_size` with ``size``."""
    h, w = shape[:2]
    if size is None or max(h, w) == size:
        return h, w
    s = size / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


def fit_size(image: np.ndarray, size: int | None) -> np.ndarray:
    """Shrink ``image`` so its longer side is ``size`` pixels (aspect kept); None keeps it.

    Raises:
        InputError: ``size`` is larger than the longer side (see :func:`check_size`).
    """
    check_size(size, image.shape)
    h, w = fitted(image.shape, size)
    if (h, w) == image.shape[:2]:
        return image
    import cv2

    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)


#: Relative difference of aspect ratios (input vs model) below which no note is printed.
ASPECT_TOLERANCE = 0.01


def note_aspect(args: argparse.Namespace, predictor, shape: Sequence[int], returned: str) -> str | None:
    """Say on stderr (unless ``--quiet``) that the model squashed an input of another aspect ratio.

    Called once a command has succeeded (so a failing run still prints one error line).

    Prediction, counterfactuals and segments resize the input to the model's grid
    (``predictor.size``), so a 768x576 frame is seen squashed to 64x64; results come back at the
    input's size. (Flow, occlusion and depth keep the aspect ratio: :mod:`probes.pyramid`.)
    Returns the line (None when the aspect ratios agree within :data:`ASPECT_TOLERANCE`).

    Args:
        shape: ``(H, W, ...)`` of the frames given to the model.
        returned: what the command returns at the input's size ("flow", "depth", ...).
    """
    h, w = shape[:2]
    mh, mw = predictor.size
    aspect, model = w / h, mw / mh
    if abs(aspect / model - 1) <= ASPECT_TOLERANCE:
        return None
    line = (f"cwm: note: {w}x{h} input is resized to the model's {mw}x{mh} (aspect {aspect:.2f} -> "
            f"{model:.2f}); {returned} is returned at {w}x{h}")
    if not getattr(args, "quiet", False):
        print(line, file=sys.stderr)
    return line


def add_pair_arguments(p: argparse.ArgumentParser, help: str) -> None:
    """Positional inputs (two images or one video), ``--gap`` and ``--size``; see :func:`load_pair`."""
    p.add_argument("inputs", nargs="+", metavar="INPUT", help=help)
    p.add_argument("--gap", type=positive_int, default=None, metavar="K",
                   help="video: use frames 0 and K (default 1)")
    p.add_argument("--size", type=positive_int, default=None, metavar="S",
                   help="shrink frames so the longer side is S pixels (never enlarges: a larger S is refused)")


def load_pair(args: argparse.Namespace, command: str) -> tuple[np.ndarray, np.ndarray]:
    """The frame pair of :func:`add_pair_arguments`'s arguments, resized by ``--size``."""
    from cwm.io import load_frame_pair

    if len(args.inputs) > 2:
        raise UsageError(f"{command}: expected two images or one video, got {len(args.inputs)} inputs")
    if len(args.inputs) == 2 and args.gap:
        raise UsageError(f"{command}: --gap applies to a video input, not to two images")
    # --size shrinks images while decoding (a huge photo never sits in memory as a full RGB
    # array); fit_size then shrinks video frames. An image smaller than --size comes back at its
    # own size, which check_size refuses (naming it).
    f0, f1 = load_frame_pair(*args.inputs, gap=args.gap or 1, max_side=args.size)
    return fit_size(f0, args.size), fit_size(f1, args.size)


def load_predictor(args: argparse.Namespace) -> CWMPredictor:
    """``cwm.load(--weights, --device)``; a bad or unavailable ``--device`` is a ConfigError.

    With ``args.predictor_cache`` (a dict, set by :mod:`cwm.cli.folders`), loaded once and shared."""
    import cwm
    from cwm.predictor import resolve_device

    cache = getattr(args, "predictor_cache", None)
    if cache is not None and "predictor" in cache:
        return cache["predictor"]
    predictor = cwm.load(args.weights, device=resolve_device(args.device, name="--device"))
    if cache is not None:
        cache["predictor"] = predictor
    return predictor


def progress(total: int, desc: str, quiet: bool) -> tqdm:
    """A tqdm bar on stderr (count, rate and ETA)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="pair", file=sys.stderr, disable=quiet,
                dynamic_ncols=True, leave=False)

