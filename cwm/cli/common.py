"""Pieces every subcommand shares: the parser class, argument types, outputs and progress.

Nothing here imports torch: ``cwm --help`` and argument errors stay fast.
"""
from __future__ import annotations

import argparse
import difflib
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cwm.errors import InputError

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

    def error(self, message: str):  # type: ignore[override]
        message = " ".join(_with_choice_hint(message).split())  # one line, whatever the user typed
        command = self.prog.split(" ", 1)[1] if " " in self.prog else ""
        where = f" (see `{self.prog} --help`)" if command else " (see `cwm --help`)"
        self.exit(2, f"cwm: error: {f'{command}: ' if command else ''}{message}{where}\n")


def _with_choice_hint(message: str) -> str:
    m = re.search(r"invalid choice: '(.*?)' \(choose from (.*)\)", message)
    if not m:
        return message
    choices = re.findall(r"'([^']*)'", m.group(2))
    close = difflib.get_close_matches(m.group(1), choices, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    what = message.split(":", 1)[0]
    if what in ("argument COMMAND", "argument ACTION"):  # the subcommand words
        return f"unknown command '{m.group(1)}'{hint} (commands: {', '.join(choices)})"
    return f"{what}: unknown choice '{m.group(1)}'{hint} (choose from {', '.join(choices)})"


def unknown_options(parser: argparse.ArgumentParser, extras: Sequence[str]) -> str:
    """One-line message for arguments ``parser`` does not know, with the closest option names."""
    options = [s for a in parser._actions for s in a.option_strings]
    hints = []
    for arg in extras:
        name = arg.split("=", 1)[0]
        close = difflib.get_close_matches(name, options, n=1, cutoff=0.6) if name.startswith("-") else []
        hints += close
    hint = f" (did you mean {', '.join(hints)}?)" if hints else ""
    return f"unrecognized argument{'s' if len(extras) > 1 else ''}: {' '.join(extras)}{hint}"


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


# ----------------------------------------------------------------------------- argument types
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


def fit_size(image: np.ndarray, size: int | None) -> np.ndarray:
    """Resize ``image`` so its longer side is ``size`` pixels (aspect kept); None keeps it.

    Raises:
        InputError: the result would have more pixels than PIL's decompression-bomb limit
            (``PIL.Image.MAX_IMAGE_PIXELS``), the most cwm reads from a file.
    """
    if size is None or max(image.shape[:2]) == size:
        return image
    import cv2
    from PIL import Image

    h, w = image.shape[:2]
    s = size / max(h, w)
    new = (max(1, round(w * s)), max(1, round(h * s)))
    if Image.MAX_IMAGE_PIXELS and new[0] * new[1] > Image.MAX_IMAGE_PIXELS:
        raise InputError(f"--size {size} would enlarge {w}x{h} frames to {new[0]}x{new[1]}, more than "
                         f"the {Image.MAX_IMAGE_PIXELS} pixels cwm reads from a file")
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, new, interpolation=interp)


def add_pair_arguments(p: argparse.ArgumentParser, help: str) -> None:
    """Positional inputs (two images or one video), ``--gap`` and ``--size``; see :func:`load_pair`."""
    p.add_argument("inputs", nargs="+", metavar="INPUT", help=help)
    p.add_argument("--gap", type=positive_int, default=None, metavar="K",
                   help="video: use frames 0 and K (default 1)")
    p.add_argument("--size", type=positive_int, default=None, metavar="S",
                   help="resize frames so the longer side is S pixels")


def load_pair(args: argparse.Namespace, command: str) -> tuple[np.ndarray, np.ndarray]:
    """The frame pair of :func:`add_pair_arguments`'s arguments, resized by ``--size``."""
    from cwm.io import load_frame_pair

    if len(args.inputs) > 2:
        raise UsageError(f"{command}: expected two images or one video, got {len(args.inputs)} inputs")
    if len(args.inputs) == 2 and args.gap:
        raise UsageError(f"{command}: --gap applies to a video input, not to two images")
    # --size shrinks images while decoding (a huge photo never sits in memory as a full RGB
    # array); fit_size then only enlarges small images or resizes video frames.
    f0, f1 = load_frame_pair(*args.inputs, gap=args.gap or 1, max_side=args.size)
    return fit_size(f0, args.size), fit_size(f1, args.size)


def load_predictor(args: argparse.Namespace):
    """``cwm.load(--weights, --device)``; a bad or unavailable ``--device`` is a ConfigError."""
    import cwm
    from cwm.predictor import resolve_device

    return cwm.load(args.weights, device=resolve_device(args.device, name="--device"))


def progress(total: int, desc: str, quiet: bool):
    """A tqdm bar on stderr (count, rate and ETA)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="pair", file=sys.stderr, disable=quiet,
                dynamic_ncols=True, leave=False)


# ----------------------------------------------------------------------------------- outputs
class Outputs:
    """All the files one command writes: checked up front, written atomically, rolled back.

    Every path is declared with :meth:`plan` before any computation, and :meth:`check` refuses
    (without ``overwrite``) if any exists, so a refusal leaves nothing behind. Each file is
    written through :func:`cwm.atomic.atomic_write`. If the command fails or is interrupted
    (Ctrl-C), the files this run created are removed again, so an output folder holds either a
    complete result or none (files that existed before, replaced under ``--overwrite``, stay).
    """

    def __init__(self, folder: Path, overwrite: bool):
        self.folder, self.overwrite = Path(folder), overwrite
        self.planned: list[Path] = []
        self.patterns: list[str] = []  # outputs whose count is known only later, e.g. "mask_*.png"
        self.written: list[Path] = []  # in order, this run
        self.created: list[Path] = []  # the subset that did not exist before (rolled back on failure)
        self._preexisting: set[Path] = set()
        self._new_dirs: set[Path] = set()  # folders this run may create (removed again if left empty)

    def plan(self, *names: str | os.PathLike) -> list[Path]:
        paths = [self.folder / n for n in names]
        self.planned.extend(paths)
        return paths

    def plan_pattern(self, pattern: str) -> None:
        """Declare outputs named by a glob ``pattern`` whose number is known only after computing."""
        self.patterns.append(pattern)

    def check(self) -> None:
        """Raise InputError if a planned file exists (without overwrite) or is a folder."""
        if self.folder.exists() and not self.folder.is_dir():
            raise InputError(f"cannot write into '{self.folder}': it is a file, not a folder")
        for p in self.planned:
            if p.is_dir():
                raise InputError(f"cannot write '{p}': it is a folder")
        existing = [p for p in self.planned if p.exists()]
        if self.folder.is_dir():
            existing += sorted(p for pat in self.patterns for p in self.folder.glob(pat))
        if existing and not self.overwrite:
            more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
            raise InputError(f"output '{existing[0]}'{more} already exists; pass --overwrite "
                             "to replace, or choose another folder with -o")
        self._preexisting = set(existing)
        dirs = {self.folder, *(p.parent for p in self.planned)}
        self._new_dirs = {a for d in dirs for a in (d, *d.parents) if not a.exists()}
        from cwm.atomic import stale_temp_files

        for p in self.planned:  # leftovers of a run that was killed (SIGKILL) before renaming
            for tmp in stale_temp_files(p):
                tmp.unlink(missing_ok=True)

    def path(self, name: str) -> Path:
        """A path under the folder for a :meth:`plan_pattern` output (checked by :meth:`check`)."""
        return self.folder / name

    def _write(self, path: Path, write: Callable[[], Any]) -> Path:
        """Run ``write()`` (an atomic writer of ``path``) and record ``path`` as written.

        An interrupt can land after the writer renamed the file into place but before it
        returned; a file that was not there at :meth:`check` and is there now is then this run's,
        so it is recorded for :meth:`rollback` all the same.
        """
        fresh = path not in self._preexisting
        try:
            write()
        except KeyboardInterrupt:
            if fresh and path.exists() and path not in self.created:
                self.created.append(path)
            raise
        if fresh:
            self.created.append(path)
        self.written.append(path)
        return path

    def image(self, path: Path, img: np.ndarray) -> Path:
        from cwm.io import write_image

        return self._write(path, lambda: write_image(path, img, overwrite=self.overwrite))

    def array(self, path: Path, arr: np.ndarray) -> Path:
        """``.npy`` (any array) or ``.flo`` (a flow ``[H, W, 2]``, Middlebury format)."""
        from cwm.atomic import atomic_write
        from cwm.flowio import write_flo

        def write() -> None:
            if path.suffix == ".flo":
                write_flo(path, arr, overwrite=self.overwrite)
                return
            with atomic_write(path, overwrite=self.overwrite) as tmp:
                np.save(tmp, arr)

        return self._write(path, write)

    def video(self, path: Path, frames: Iterable[np.ndarray], fps: float) -> Path:
        from cwm.io import write_video

        return self._write(path, lambda: write_video(path, frames, fps=fps, overwrite=self.overwrite))

    def rollback(self) -> None:
        for p in reversed(self.created):
            try:
                p.unlink()
            except OSError:
                pass
        for d in sorted(self._new_dirs, key=lambda d: -len(d.parts)):
            try:
                d.rmdir()  # only if empty
            except OSError:
                pass
        self.created.clear()
        self.written.clear()

    def report(self, per_folder: int = 3) -> None:
        """Print the paths written (stdout): single files, and folders of per-pair files summarised."""
        groups: dict[Path, list[Path]] = {}
        for p in self.written:
            groups.setdefault(p.parent, []).append(p)
        for folder, paths in sorted(groups.items(), key=lambda kv: (kv[0] != self.folder, str(kv[0]))):
            if len(paths) <= per_folder:
                print(*paths, sep="\n")
            else:
                print(f"{folder}{os.sep} ({len(paths)} files: {paths[0].name} ... {paths[-1].name})")


def run_outputs(outputs: Outputs, body: Callable[[], Any]) -> Any:
    """Run ``body`` (which writes through ``outputs``); on any failure roll back, then re-raise."""
    try:
        return body()
    except BaseException:
        outputs.rollback()
        raise
