"""Frames of a video by index, whatever holds them: a video file, a folder of images, an array.

Tracking over a whole video must not hold the whole video: :func:`open_frames` gives random
access to one frame at a time, with a small cache of recently used frames (``window``), so memory
stays flat in the video's length. Every frame comes out as uint8 ``[H, W, 3]`` RGB.

- a video file (any extension :func:`cwm.io.is_video_path` accepts): decoded on demand;
- a folder of images (``.png``, ``.jpg``, ...): the frames in natural sort order of their names
  (``f2.png`` before ``f10.png``), read on demand; every image must have the first one's size;
- a numpy array ``[T, H, W, 3]`` uint8, or a list of ``[H, W, 3]`` arrays (already in memory).

    with open_frames("clip.mp4") as frames:
        len(frames), frames.size, frames[3]          # T, (H, W), uint8 [H, W, 3]
"""
from __future__ import annotations

import os
import re
from collections import OrderedDict
from pathlib import Path

import numpy as np

from cwm.errors import InputError


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def list_frames_folder(folder: str | os.PathLike) -> list[Path]:
    """The image files of ``folder`` in natural sort order; InputError if there are none."""
    from cwm.io import is_image_path

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"'{folder}' is not a folder of frames")
    files = sorted((p for p in folder.iterdir() if p.is_file() and is_image_path(p)),
                   key=lambda p: _natural_key(p.name))
    if not files:
        raise InputError(f"folder '{folder}' holds no image frames (png, jpg, ...)")
    return files


class FrameSource:
    """Random access to the frames of a video; see the module docstring.

    Attributes:
        name: what the frames came from (a path, or ``"<array>"``).
        size: ``(H, W)`` of every frame.
        fps: frames per second (the video's, else 10.0).
    """

    def __init__(self, source, window: int = 8):
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self.window = max(1, int(window))
        self._reader = None
        self._files: list[Path] | None = None
        self._array = None
        self.fps = 10.0
        if isinstance(source, (str, os.PathLike)):
            self.name = str(source)
            if Path(source).is_dir():
                self._files = list_frames_folder(source)
                self._count = len(self._files)
                first = self._read_file(0)
                self.size = first.shape[:2]
                self._cache[0] = first
            else:
                from cwm.io import open_video

                self._reader = open_video(source)
                self._count, self.size = self._reader.num_frames, tuple(self._reader.size)
                self.fps = float(self._reader.fps) or 10.0
        else:
            self.name = "<array>"
            frames = source if isinstance(source, np.ndarray) else list(source)
            if isinstance(frames, np.ndarray):
                ok = frames.ndim == 4 and frames.shape[-1] == 3 and frames.dtype == np.uint8
                shapes = {frames.shape[1:]} if ok else set()
            else:
                ok = all(isinstance(f, np.ndarray) and f.ndim == 3 and f.shape[-1] == 3
                         and f.dtype == np.uint8 for f in frames)
                shapes = {f.shape for f in frames} if ok else set()
            if not ok or len(shapes) != 1:
                raise InputError("frames must be a uint8 array [T, H, W, 3] or a list of uint8 "
                                 "[H, W, 3] RGB frames of one size")
            self._array = frames
            self._count = len(frames)
            self.size = tuple(frames[0].shape[:2])
        if self._count < 2:
            self.close()
            raise InputError(f"{self.name}: need at least 2 frames to track, got {self._count}")

    def __len__(self) -> int:
        return self._count

    def _read_file(self, i: int) -> np.ndarray:
        from cwm.io import read_image

        frame = read_image(self._files[i])
        if i and frame.shape[:2] != tuple(self.size):
            raise InputError(f"frame '{self._files[i]}' is {frame.shape[1]}x{frame.shape[0]}, "
                             f"the first frame is {self.size[1]}x{self.size[0]}")
        return frame

    def __getitem__(self, i: int) -> np.ndarray:
        """Frame ``i`` as uint8 ``[H, W, 3]`` RGB (cached frames are shared: do not modify them)."""
        i = int(i)
        if not 0 <= i < self._count:
            raise InputError(f"{self.name}: frame {i} is outside its {self._count} frames")
        if self._array is not None:
            return np.asarray(self._array[i])
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        frame = self._read_file(i) if self._files is not None else self._reader.get([i])[0]
        self._cache[i] = frame
        while len(self._cache) > self.window:
            self._cache.popitem(last=False)
        return frame

    def __iter__(self):
        return (self[i] for i in range(self._count))

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self._cache.clear()

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_frames(source, window: int = 8) -> FrameSource:
    """A :class:`FrameSource` over a video path, a frames folder, or in-memory frames (an
    existing FrameSource is returned as is). ``window``: frames kept in the cache."""
    if isinstance(source, FrameSource):
        return source
    return FrameSource(source, window)
