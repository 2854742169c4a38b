"""Finding the videos of a collection: a folder (searched recursively), a glob, or frames folders.

A video is a video file (.mp4, .avi, .mov, .mkv, .webm) or a folder of images (each one video;
its subfolders are not searched). Each gets an output name, its path relative to the collection's
root without the extension; :func:`balance` splits them among processes by frame count.
"""
from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cwm.errors import InputError


@dataclass
class Item:
    """One video of a collection: ``path`` (a file or a frames folder) and its output ``name``."""

    path: Path
    name: str  # output folder, relative to OUT (posix)
    frames: int = 0  # 0: unreadable (the failure is reported when it is processed)

    @property
    def key(self) -> str:
        return self.name.replace("/", "__")


class FramesFolderReader:
    """A folder of images (natural sort order) read like a video: ``num_frames``, ``size``
    ``(H, W)``, ``fps`` (None), ``iter_frames()``, ``iter_indices()``; every image must have the
    first one's size."""

    def __init__(self, folder: str | os.PathLike, min_frames: int = 1):
        from cwm.framesource import list_frames_folder
        from cwm.io import read_image

        self.path, self._read = Path(folder), read_image
        self.files = list_frames_folder(folder)
        self.num_frames, self.fps = len(self.files), None
        if self.num_frames < min_frames:
            raise InputError(f"cannot use frames folder '{folder}': it has {self.num_frames} image(s), "
                             f"need at least {min_frames}")
        self.size = tuple(self._frame(0).shape[:2])

    def _frame(self, i: int) -> np.ndarray:
        frame = self._read(self.files[i])
        if i and frame.shape[:2] != self.size:
            raise InputError(f"frames folder '{self.path}': '{self.files[i].name}' is "
                             f"{frame.shape[1]}x{frame.shape[0]}, the first frame {self.size[1]}x{self.size[0]}")
        return frame

    def iter_frames(self) -> Iterator[np.ndarray]:
        return (self._frame(i) for i in range(self.num_frames))

    def iter_indices(self, indices) -> Iterator[tuple[int, np.ndarray]]:
        return ((i, self._frame(i)) for i in indices)

    def close(self) -> None:
        pass


def _has_images(folder: Path) -> bool:
    from cwm.io import is_image_path

    return any(p.is_file() and is_image_path(p) for p in folder.iterdir())


def collection(inputs: list[str], out: Path | None) -> tuple[Path, list[Item]] | None:
    """``(root, items)`` when ``inputs`` is one folder of videos or one glob; None otherwise (one
    video, one frames folder or two images: the command's own path). Items are sorted by name."""
    from cwm.io import is_video_path

    if len(inputs) != 1:
        return None
    text = str(inputs[0])
    path = Path(text)
    if path.is_dir():
        if _has_images(path):
            return None  # a folder of frames: one video
        root = path
        found = [p for p in _walk(path, out)]
    elif not path.exists() and glob.has_magic(text):
        matches = sorted(Path(m) for m in glob.glob(text, recursive=True))
        found = [p for p in matches if (p.is_file() and is_video_path(p)) or (p.is_dir() and _has_images(p))]
        found = [p for p in found if out is None or not _inside(p, out)]
        if not found:
            raise InputError(f"no videos or frame folders match '{text}'")
        root = Path(os.path.commonpath([str(p.parent) for p in found]))
    else:
        return None
    if not found:
        raise InputError(f"no videos (.mp4, .avi, .mov, .mkv, .webm) or folders of frames under '{text}'")
    return root, _named(root, found)


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _walk(root: Path, out: Path | None) -> list[Path]:
    """Video files and folders of images under ``root`` (not under ``out``), recursively; a
    folder of images is one video (its subfolders are not searched)."""
    from cwm.io import is_video_path

    found = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        if out is not None and _inside(here, out):
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if here != root and _has_images(here):
            found.append(here)
            dirs[:] = []
        found += [here / f for f in sorted(files) if is_video_path(f)]
    return sorted(found)


def _named(root: Path, found: list[Path]) -> list[Item]:
    """Output names: the path relative to ``root`` without the extension (with it, ``.`` as
    ``_``, where two videos would otherwise share a name)."""
    rel = [p.relative_to(root) for p in found]
    plain = [(r.with_suffix("") if p.is_file() else r).as_posix() for p, r in zip(found, rel)]
    clash = {n for n in plain if plain.count(n) > 1}
    return [Item(p, (r.as_posix().replace(".", "_") if n in clash else n))
            for p, r, n in zip(found, rel, plain)]


def count_frames(item: Item) -> int:
    """Frames of ``item`` (its balance weight); 0 when it cannot be opened."""
    try:
        if item.path.is_dir():
            from cwm.framesource import list_frames_folder

            return len(list_frames_folder(item.path))
        from cwm.io import open_video

        with contextlib.closing(open_video(item.path)) as reader:
            return int(reader.num_frames)
    except Exception:  # noqa: BLE001  (reported when the video is processed)
        return 0


def balance(items: list[Item], world: int) -> list[list[Item]]:
    """Greedy longest-first split: each item, most frames first (then by name), goes to the
    process with the fewest frames so far (the lowest rank on ties)."""
    shares: list[list[Item]] = [[] for _ in range(world)]
    load = [0] * world
    for item in sorted(items, key=lambda it: (-it.frames, it.name)):
        r = min(range(world), key=lambda k: (load[k], k))
        shares[r].append(item)
        load[r] += max(item.frames, 1)
    return shares
