"""Video reading with backend fallback: decord, then PyAV, then OpenCV.

:func:`open_video` tries each backend in turn and keeps the first that opens the file *and*
decodes its first frame (OpenCV, for one, opens AV1 files it cannot decode; decord cannot open
AV1 at all). The public names are re-exported by :mod:`cwm.io`.

Policies, the same for every backend:
  - Frames are uint8 RGB ``[H, W, 3]``; ``size`` is the first frame's ``(H, W)``. A later frame
    of another size is resized to it (area interpolation), so every frame has the same shape.
  - Rotation metadata is ignored: frames come as stored (decord and PyAV cannot apply it, so
    OpenCV's auto-rotation is switched off to match).
  - ``num_frames`` comes from the container index (decord; PyAV when the container stores a
    count) or from counting packets (PyAV for mkv/webm, which store none), which is exact
    without decoding. OpenCV's count can be an estimate; if a backend reaches the end of the
    stream early, ``num_frames`` is lowered to the frames actually decoded.
  - Frame ``i`` is the ``i``-th frame in presentation order. PyAV and OpenCV decode forward
    from the current position and seek only for jumps of more than :data:`SEEK_GAP` frames;
    PyAV then maps timestamps to indices with ``fps``, exact for constant frame rate.
  - The backends' own log lines are silenced (decord's and OpenCV's FFmpeg logs, OpenCV
    warnings, decord's "ERROR opening" line): a backend that fails is expected while falling
    back, and its reason is in the InputError. ``OPENCV_LOG_LEVEL`` and
    ``OPENCV_FFMPEG_LOGLEVEL`` set by the user are left alone.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from cwm.errors import ConfigError, InputError
from cwm.video_readers import _READERS, SEEK_GAP, VideoReader, import_cv2, one_line  # noqa: F401  (public names re-exported)

BACKENDS = ("decord", "pyav", "opencv")


def check_readable(path: str | os.PathLike, kind: str) -> None:
    """Raise InputError unless ``path`` is an existing, readable, non-empty file.

    ``kind`` ("image", "video") only words the message.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"cannot read {kind} '{path}': no such file")
    if p.is_dir():
        raise InputError(f"cannot read {kind} '{path}': it is a folder, not a file")
    try:
        with open(p, "rb") as f:
            head = f.read(1)
    except PermissionError:
        raise InputError(f"cannot read {kind} '{path}': permission denied") from None
    except OSError as e:
        raise InputError(f"cannot read {kind} '{path}': {e.strerror or e}") from None
    if not head:
        raise InputError(f"cannot read {kind} '{path}': the file is empty (0 bytes)")


def default_backends(path: str | os.PathLike) -> tuple[str, ...]:
    """The backend order open_video tries: decord, PyAV, OpenCV, except decord for AVI.

    decord returns wrong frames when seeking in AVI files with long GOPs (H.264 in AVI here;
    dmlc/decord#195, #252), so AVI goes to PyAV first.
    """
    if Path(path).suffix.lower() == ".avi":
        return tuple(b for b in BACKENDS if b != "decord")
    return BACKENDS


def open_video(path: str | os.PathLike, min_frames: int = 1,
               backends: Sequence[str] | None = None, num_threads: int = 0) -> VideoReader:
    """Open a video with the first backend that can decode it.

    Args:
        path: the video file (any container FFmpeg knows; the extension is not checked).
        min_frames: fewer frames than this raises InputError (e.g. 2 for a frame pair).
        backends: the backends to try, in order, from ``("decord", "pyav", "opencv")``;
            default :func:`default_backends`.
        num_threads: decoder threads for decord and PyAV (0: the library's choice); use 1 in
            DataLoader workers.
    Returns:
        an open :class:`VideoReader`.
    Raises:
        InputError: missing, a folder, unreadable, empty, no backend can decode it (the message
            lists each backend's reason), or fewer than ``min_frames`` frames.
        ConfigError: an unknown backend name.
    """
    backends = default_backends(path) if backends is None else tuple(backends)
    unknown = [b for b in backends if b not in _READERS]
    if unknown or not backends:
        raise ConfigError(f"unknown video backend(s) {unknown}; choose from {list(_READERS)}")
    check_readable(path, "video")
    reasons = []
    for name in backends:
        try:
            reader = _READERS[name](path, num_threads)
            break
        except ImportError:
            reasons.append(f"{name}: not installed")
        except Exception as e:  # each library raises its own types; try the next backend
            reasons.append(f"{name}: {one_line(e, 60)}")
    else:
        raise InputError(f"cannot read video '{path}': no decodable frames "
                         f"(tried {'; '.join(reasons)})")
    if reader.num_frames < min_frames:
        reader.close()
        raise InputError(f"cannot use video '{path}': it has {reader.num_frames} frame(s), "
                         f"need at least {min_frames}")
    return reader
