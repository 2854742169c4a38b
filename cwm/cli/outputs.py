"""The files one CLI command writes: planned and checked up front, written atomically, rolled back.

Nothing here imports torch at import time.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from cwm.errors import InputError


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

    @contextlib.contextmanager
    def _recording(self, path: Path) -> Iterator[None]:
        """Record ``path`` as written once the ``with`` body (an atomic writer of it) completes.

        An interrupt can land after the writer renamed the file into place but before it
        returned; a file that was not there at :meth:`check` and is there now is then this run's,
        so it is recorded for :meth:`rollback` all the same.
        """
        fresh = path not in self._preexisting
        try:
            yield
        except KeyboardInterrupt:
            if fresh and path.exists() and path not in self.created:
                self.created.append(path)
            raise
        if fresh:
            self.created.append(path)
        self.written.append(path)

    def _write(self, path: Path, write: Callable[[], Any]) -> Path:
        """Run ``write()`` (an atomic writer of ``path``) and record ``path`` as written."""
        with self._recording(path):
            write()
        return path

    @contextlib.contextmanager
    def npz(self, path: Path) -> Iterator[Callable[[str, np.ndarray], None]]:
        """Yield ``add(name, array)`` streaming arrays into one compressed ``.npz`` at ``path``
        (:func:`cwm.npz.npz_writer`: memory stays flat, the file appears complete or not at all)."""
        from cwm.npz import npz_writer

        with self._recording(path), npz_writer(path, overwrite=self.overwrite) as add:
            yield add

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
