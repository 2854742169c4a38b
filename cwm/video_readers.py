"""The video readers behind :func:`cwm.video.open_video`: the common :class:`VideoReader`
(index checks, iteration, error wording) and its decord, PyAV and OpenCV backends. The
policies they share are in :mod:`cwm.video`'s docstring."""
from __future__ import annotations

import contextlib
import os
import re
import sys
from types import ModuleType
from typing import Iterable, Iterator, Sequence

import numpy as np

from cwm.errors import ConfigError, CWMError, InputError

#: A forward jump of more frames than this seeks instead of decoding through (PyAV, OpenCV).
SEEK_GAP = 120
# decord's "[12:00:00] file.cc:151: " and PyAV's "[Errno 1094995529] " prefixes.
_LOG_PREFIX = re.compile(r"^(\[[\d:]+\]\s+\S+:\d+:|\[Errno -?\d+\])\s*")


def one_line(e: BaseException, limit: int = 100) -> str:
    """An exception as one short line (C++ libraries put log prefixes and traces in messages)."""
    lines = [s.strip() for s in str(e).splitlines() if s.strip()]
    text = _LOG_PREFIX.sub("", lines[0]) if lines else type(e).__name__
    text = text.split(" ERROR ", 1)[-1]  # decord: "Check failed: <expr> ERROR <the reason>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class VideoReader:
    """An open video file; make one with :func:`open_video`, and close it (or use ``with``).

    Attributes:
        path: the file.
        backend: ``"decord"``, ``"pyav"`` or ``"opencv"``.
        num_frames: number of frames (see the module notes on how it is counted).
        fps: average frames per second (0.0 if the container does not say).
        size: ``(H, W)`` of every returned frame.
    """

    backend = ""

    def __init__(self, path: str | os.PathLike, num_threads: int = 0) -> None:
        self.path, self.num_threads = str(path), num_threads
        self.num_frames, self.fps, self.size = 0, 0.0, (0, 0)
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def get(self, indices: Sequence[int]) -> np.ndarray:
        """Decode the frames at ``indices`` (any order, repeats allowed) as ``[N, H, W, 3]`` uint8.

        Only those frames are converted to RGB; each distinct index is decoded once.
        """
        idx = [int(i) for i in np.asarray(indices, dtype=np.int64).reshape(-1)]
        bad = [i for i in idx if not 0 <= i < self.num_frames]
        if bad:
            raise InputError(f"cannot read frame {bad[0]} of '{self.path}': "
                             f"it has {self.num_frames} frames")
        wanted = sorted(set(idx))
        got = dict(self._decode(wanted))
        missing = [i for i in wanted if i not in got]
        if missing:
            raise InputError(f"cannot read frame {missing[0]} of '{self.path}': the stream ends "
                             f"after {self.num_frames} decodable frames ({self.backend})")
        if not idx:
            return np.empty((0, *self.size, 3), np.uint8)
        return np.stack([got[i] for i in idx])

    def iter_frames(self, step: int = 1, start: int = 0,
                    max_frames: int | None = None) -> Iterator[np.ndarray]:
        """Stream frames ``start, start + step, ...`` one ``[H, W, 3]`` array at a time.

        Memory stays constant whatever the video's length. Stops quietly at the end of the
        stream, even if that comes before ``num_frames`` (a truncated file).
        """
        if step < 1 or start < 0 or (max_frames is not None and max_frames < 0):
            raise ConfigError(f"need step >= 1, start >= 0, max_frames >= 0; got step={step}, "
                              f"start={start}, max_frames={max_frames}")
        wanted = range(start, self.num_frames, step)
        if max_frames is not None:
            wanted = wanted[:max_frames]
        for _, frame in self._decode(wanted):
            yield frame

    def iter_indices(self, indices: Iterable[int]) -> Iterator[tuple[int, np.ndarray]]:
        """Stream ``(i, frame)`` for ascending, distinct ``indices``, one frame at a time.

        Like :meth:`iter_frames`, this stops quietly at the end of the stream (a truncated file),
        where :meth:`get` raises.
        """
        idx = [int(i) for i in indices]
        if any(b <= a for a, b in zip(idx, idx[1:])) or (idx and idx[0] < 0):
            raise ConfigError("iter_indices needs ascending, distinct, non-negative indices")
        yield from self._decode(i for i in idx if i < self.num_frames)

    def close(self) -> None:
        """Release the file; further reads are undefined."""

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return self.num_frames

    def __repr__(self) -> str:
        h, w = self.size
        return (f"VideoReader('{self.path}', backend={self.backend}, frames={self.num_frames}, "
                f"fps={self.fps:.3g}, size={w}x{h})")

    def _decode(self, indices: Iterable[int]) -> Iterator[tuple[int, np.ndarray]]:
        """The backend's ``_read`` with its library errors turned into InputError."""
        try:
            yield from self._read(indices)
        except CWMError:
            raise
        except Exception as e:  # each library raises its own types (DECORDError, av.FFmpegError)
            raise InputError(f"cannot decode '{self.path}' with {self.backend}: "
                             f"{one_line(e)}") from e

    def _fit(self, frame: np.ndarray) -> np.ndarray:
        """Resize a frame whose size differs from the first frame's (see the module notes)."""
        if frame.shape[:2] == self.size:
            return frame
        import cv2

        return cv2.resize(frame, self.size[::-1], interpolation=cv2.INTER_AREA)

    # Backend hooks.
    def _open(self) -> None:
        """Open the file, set num_frames/fps/size, and decode frame 0; raise if any step fails."""
        raise NotImplementedError

    def _read(self, indices: Iterable[int]) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(i, frame)`` for ascending ``indices`` (consumed lazily); stop early at EOF."""
        raise NotImplementedError


class _DecordReader(VideoReader):
    backend = "decord"

    def _open(self) -> None:
        decord = _import_decord()
        with _stderr_silenced():  # decord's C++ logger prints "ERROR opening: ..." itself
            self._vr = decord.VideoReader(self.path, ctx=decord.cpu(0), num_threads=self.num_threads)
        self.num_frames, self.fps = len(self._vr), float(self._vr.get_avg_fps())
        if self.num_frames < 1:
            raise ValueError("no frames")
        self.size = tuple(self._frame(0).shape[:2])

    def _frame(self, i: int) -> np.ndarray:
        # vr[i] rather than get_batch: the same speed here (decord decodes forward for
        # ascending indices either way), and get_batch can hang in native code on files that
        # __getitem__ reads fine (dmlc/decord#375).
        a = self._vr[i].asnumpy()
        if a.ndim != 3 or a.shape[2] != 3:
            # decord 0.6 returns padded rows as a bogus [H, W, 4 or 6] array for some widths
            # (16, 24, 48 px, ...): refuse it, so that open_video falls back to PyAV.
            raise ValueError(f"decord returned a malformed frame of shape {list(a.shape)}")
        return a

    def _read(self, indices: Iterable[int]) -> Iterator[tuple[int, np.ndarray]]:
        for i in indices:
            yield i, self._fit(self._frame(i))

    def close(self) -> None:
        self._vr = None


def _import_decord():
    """Import decord after PyAV: decord's bundled FFmpeg libraries, loaded first, shadow PyAV's
    and break its libvpx-vp9 encoder (measured with decord 0.6.0 and PyAV 18). Its FFmpeg logs
    are switched off (see the module notes)."""
    try:
        import av  # noqa: F401
    except ImportError:
        pass
    import decord

    decord.logging.set_level(decord.logging.QUIET)
    return decord


def import_cv2() -> ModuleType:
    """Import OpenCV with its warnings and its FFmpeg's logs off, unless the user set
    ``OPENCV_LOG_LEVEL`` or ``OPENCV_FFMPEG_LOGLEVEL`` (see the module notes)."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET; read at each open
    import cv2

    if "OPENCV_LOG_LEVEL" not in os.environ:
        logging = getattr(cv2.utils, "logging", None)  # OpenCV 5; OpenCV 4 has cv2.setLogLevel
        if logging is not None:
            logging.setLogLevel(logging.LOG_LEVEL_ERROR)
        else:
            cv2.setLogLevel(2)  # LOG_LEVEL_ERROR
    return cv2


@contextlib.contextmanager
def _stderr_silenced():
    """Point file descriptor 2 at /dev/null for the ``with`` body (for C++ code that logs there).

    Output that other threads write to stderr meanwhile is lost too; without a usable fd 2
    (an embedded interpreter, say) this does nothing.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _PyAVReader(VideoReader):
    backend = "pyav"

    def _open(self) -> None:
        import av

        # A packet cut short (a truncated file's last one): PyAV 18 returns the frames the
        # decoder still held and the stream ends; older PyAV raises InvalidDataError and drops
        # them. Read older PyAV the same way: after the first frame, that error ends the stream.
        old = int(re.match(r"\d+", av.__version__).group(0)) < 18
        self._cut_short = (av.error.InvalidDataError,) if old else ()
        self._container = None
        self._restart()
        stream = self._stream
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else 0.0
        first = self._next()
        if first is None:
            raise ValueError("no decodable frames")
        self._peek, self.size = first, (first.height, first.width)
        self._t0 = first.time
        self.num_frames = stream.frames if stream.frames > 0 else self._count_packets(av)

    def _count_packets(self, av) -> int:
        with av.open(self.path) as c:
            return sum(1 for p in c.demux(c.streams.video[0]) if p.size > 0)

    def _restart(self) -> None:
        import av

        self.close()
        self._container = av.open(self.path)
        if not self._container.streams.video:
            raise ValueError("no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        self._stream.thread_count = self.num_threads
        self._frames, self._peek, self._pos = self._container.decode(self._stream), None, 0

    def _next(self):  # -> av.VideoFrame | None (end of stream)
        frame, self._peek = self._peek, None
        if frame is not None:
            return frame
        try:
            return next(self._frames, None)
        except self._cut_short:  # PyAV < 18 only (see _open)
            if self._pos == 0:
                raise
            return None

    def _seek(self, target: int) -> None:
        """Jump near ``target`` (at or before it); on any doubt, restart from frame 0."""
        s = self._stream
        if not self.fps or self._t0 is None or s.time_base is None:
            return
        self._container.seek(int((self._t0 + target / self.fps) / s.time_base), stream=s)
        self._frames = self._container.decode(s)
        frame = next(self._frames, None)
        pos = None if frame is None or frame.time is None else round(
            (frame.time - self._t0) * self.fps)
        if pos is None or pos > target:
            self._restart()
        else:
            self._peek, self._pos = frame, pos

    def _read(self, indices: Iterable[int]) -> Iterator[tuple[int, np.ndarray]]:
        h, w = self.size
        for target in indices:
            if target < self._pos:
                self._restart()
            if target - self._pos > SEEK_GAP:
                self._seek(target)
            while self._pos <= target:
                frame = self._next()
                if frame is None:
                    self.num_frames = self._pos
                    return
                self._pos += 1
            yield target, frame.to_ndarray(format="rgb24", width=w, height=h)

    def close(self) -> None:
        if getattr(self, "_container", None) is not None:
            self._container.close()
            self._container = None


class _OpenCVReader(VideoReader):
    backend = "opencv"

    def _open(self) -> None:
        cv2 = import_cv2()

        self._cap = None
        self._restart()
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        ok, first = self._cap.read()
        if not ok:
            raise ValueError("opened, but decoded no frames")
        self.size = first.shape[:2]
        self.num_frames = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if self.num_frames <= 0:  # no count in the container: count by decoding
            self.num_frames = 1 + sum(1 for _ in iter(self._cap.grab, False))
        self._restart()

    def _restart(self) -> None:
        cv2 = import_cv2()

        self.close()
        self._cap = cv2.VideoCapture(self.path, cv2.CAP_FFMPEG)
        if not self._cap.isOpened():
            raise ValueError("cannot open the file")
        self._cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)  # match decord/PyAV: frames as stored
        self._pos = 0

    def _read(self, indices: Iterable[int]) -> Iterator[tuple[int, np.ndarray]]:
        import cv2

        for target in indices:
            if target < self._pos or target - self._pos > SEEK_GAP:
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, target)
                self._pos = target
            while self._pos < target and self._cap.grab():  # skip without colour conversion
                self._pos += 1
            ok, frame = self._cap.read() if self._pos == target else (False, None)
            if not ok:
                self.num_frames = self._pos
                return
            self._pos += 1
            yield target, self._fit(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))

    def close(self) -> None:
        if getattr(self, "_cap", None) is not None:
            self._cap.release()
            self._cap = None


_READERS = {"decord": _DecordReader, "pyav": _PyAVReader, "opencv": _OpenCVReader}
