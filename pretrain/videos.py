"""Video folders for pretraining: finding and scanning the videos, and :class:`VideoClips`, clips
cut from them with the same ``(seed, epoch, index)`` keys as :mod:`pretrain.clips`.
"""
from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from cwm.errors import CWMError, InputError
from pretrain import skips
from pretrain.clips import ClipSpec, SkippedVideoWarning, item_rng

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
#: Open readers kept per worker (videos drawn again soon skip the open).
READER_CACHE = 8


# --------------------------------------------------------------------------------- videos
@dataclass(frozen=True)
class VideoInfo:
    path: str
    num_frames: int
    fps: float


def find_videos(folder: str | os.PathLike) -> list[Path]:
    """Video files under ``folder`` (recursive, sorted), by extension (any case)."""
    root = Path(folder)
    if not root.exists():
        raise InputError(f"data folder '{folder}' does not exist")
    if not root.is_dir():
        raise InputError(f"data.source '{folder}' is not a folder (or 'synthetic')")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())


def gap_in_frames(spec: ClipSpec, fps: float) -> tuple[int, int]:
    """The gap range in frames for a video at ``fps`` (from ``gap_ms`` when set)."""
    if spec.gap_ms is None:
        return spec.gap_frames
    lo, hi = (max(1, round(ms * fps / 1000)) for ms in spec.gap_ms)
    return lo, hi


def scan_videos(folder: str | os.PathLike, spec: ClipSpec, backends: tuple[str, ...] | None = None
                ) -> tuple[list[VideoInfo], list[tuple[str, str]]]:
    """Open every video once (headers and the first frame only) and keep the usable ones.

    ``backends`` None follows :func:`cwm.io.default_backends` for each file.

    Returns:
        ``(usable, skipped)``; ``skipped`` holds ``(path, reason)`` for unreadable, empty and
        too-short videos.
    Raises:
        InputError: the folder holds no video files at all.
    """
    from cwm.io import open_video

    paths = find_videos(folder)
    if not paths:
        raise InputError(f"no videos ({', '.join(e[1:] for e in VIDEO_EXTENSIONS)}) found under '{folder}'")
    usable, skipped = [], []
    for p in paths:
        try:
            with open_video(p, backends=backends, num_threads=1) as r:
                n, fps = r.num_frames, r.fps
        except CWMError as e:
            skipped.append((str(p), str(e)))
            continue
        if spec.gap_ms is not None and fps <= 0:
            skipped.append((str(p), "no frame rate in the file, needed for data.gap_ms"))
            continue
        need = (spec.num_frames - 1) * gap_in_frames(spec, fps)[0] + 1
        if n < need:
            skipped.append((str(p), f"too short: {n} frame(s), a {spec.num_frames}-frame clip with "
                                    f"the smallest gap needs {need}"))
            continue
        usable.append(VideoInfo(str(p), n, fps))
    return usable, skipped


class VideoClips(Dataset):
    """Clips from a list of usable videos; item ``i`` of an epoch reads video ``i % len(videos)``.

    Only the frames of the clip are decoded (``reader.get``), so memory does not grow with video
    length. A video that fails mid-training is warned about once (per worker), recorded in
    ``skip_log`` (:mod:`pretrain.skips`) and replaced by the next video.
    """

    def __init__(self, spec: ClipSpec, videos: list[VideoInfo], length: int,
                 backends: tuple[str, ...] | None = None):
        self.spec, self.videos, self.length = spec, videos, length
        self.backends = None if backends is None else tuple(backends)  # None: cwm.io.default_backends
        self._readers: OrderedDict = OrderedDict()
        self._pid, self._inherited = os.getpid(), []
        self._failed: set[str] = set()
        self.skip_log: str | None = None  # set by the training loop: where failures are recorded

    def __getstate__(self) -> dict:
        state = dict(self.__dict__, _readers=OrderedDict(), _inherited=[])  # readers do not pickle
        return state

    def __len__(self) -> int:
        return self.length

    def _reader(self, path: str):
        from cwm.io import open_video

        if os.getpid() != self._pid:
            # A forked DataLoader worker: readers opened by the parent (for the eval batch) hold
            # decoder threads that did not survive the fork. Never use or close them here.
            self._inherited.append(self._readers)
            self._readers, self._pid = OrderedDict(), os.getpid()
        if path not in self._readers:
            self._readers[path] = open_video(path, backends=self.backends, num_threads=1)
            while len(self._readers) > READER_CACHE:
                self._readers.popitem(last=False)[1].close()
        self._readers.move_to_end(path)
        return self._readers[path]

    def clip(self, video: VideoInfo, rng: np.random.Generator) -> np.ndarray:
        lo, hi = gap_in_frames(self.spec, video.fps)
        t = self.spec.num_frames - 1
        hi = max(lo, min(hi, (video.num_frames - 1) // t))
        gap = int(rng.integers(lo, hi + 1))
        start = int(rng.integers(0, video.num_frames - gap * t))
        return self._reader(video.path).get([start + k * gap for k in range(t + 1)])

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, index = key
        for attempt in range(len(self.videos)):
            video = self.videos[(index + attempt) % len(self.videos)]
            if video.path in self._failed:
                continue
            rng = item_rng(self.spec.seed, epoch, index, attempt)
            try:
                frames = self.clip(video, rng)
            except CWMError as e:
                self._failed.add(video.path)
                self._readers.pop(video.path, None)
                warnings.warn(f"skipping video '{video.path}': {e}", SkippedVideoWarning, stacklevel=2)
                skips.record(self.skip_log, video.path, str(e))
                continue
            return self.spec.finish(rng, frames)
        raise InputError("every video failed to decode; see the warnings above")
