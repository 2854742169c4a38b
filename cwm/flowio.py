"""Readers and writers of ground-truth formats: Middlebury ``.flo``, KITTI flow PNG, TAP-Vid.

All flows are ``[H, W, 2]`` float32 ``(dx, dy)`` in pixels. Problems with a file raise
:class:`cwm.errors.InputError` naming the file.

- Middlebury ``.flo``: little-endian float32 tag 202021.25 ("PIEH"), int32 width, int32 height,
  then ``H * W * 2`` float32 values, row-major, ``(dx, dy)`` interleaved. Round trips are exact.
- KITTI flow PNG: 16-bit, 3 channels stored R, G, B = dx, dy, valid, with
  ``value = flow * 64 + 2**15``. The round trip is exact for flows on the 1/64 px grid within
  about +-512 px; other values are rounded to the nearest 1/64 px.
- TAP-Vid pickles: a dict ``{name: {"video", "points", "occluded"}}`` (DAVIS) or a list of such
  dicts (Kinetics, RGB-Stacking). ``video`` is ``[T, H, W, 3]`` uint8 or a sequence of encoded
  JPEG/PNG frames; ``points`` ``[N, T, 2]`` are ``(x, y)`` normalised to [0, 1]; ``occluded``
  ``[N, T]`` bool. Loading uses a restricted unpickler that allows only numpy arrays, dtypes and
  builtin containers, never arbitrary globals.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np

from cwm.atomic import atomic_write
from cwm.errors import InputError

FLO_TAG = 202021.25
KITTI_SCALE = 64.0
KITTI_OFFSET = 2.0 ** 15


def _check_flow(flow: np.ndarray) -> np.ndarray:
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[2] != 2 or not np.issubdtype(flow.dtype, np.number):
        raise InputError(f"flow must be a numeric [H, W, 2] array, got {flow.dtype} {flow.shape}")
    return flow


def write_flo(path: str | PathLike, flow: np.ndarray, overwrite: bool = False) -> None:
    """Write a flow ``[H, W, 2]`` as a Middlebury ``.flo`` file, atomically.

    An existing ``path`` raises :class:`cwm.errors.OutputExistsError` unless ``overwrite``.
    """
    flow = _check_flow(flow).astype("<f4")
    height, width = flow.shape[:2]
    with atomic_write(path, overwrite=overwrite) as tmp, open(tmp, "wb") as f:
        f.write(np.array([FLO_TAG], "<f4").tobytes())
        f.write(np.array([width, height], "<i4").tobytes())
        f.write(flow.tobytes())


def read_flo(path: str | PathLike) -> np.ndarray:
    """Read a Middlebury ``.flo`` file into ``[H, W, 2]`` float32.

    Raises:
        InputError: unreadable, no "PIEH" tag, or a size that does not match the header; nothing
            else escapes, whatever the file holds.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read flow file {path}: {exc.strerror or exc}") from None
    header = 12
    if len(data) < header or np.frombuffer(data[:4], "<f4")[0] != np.float32(FLO_TAG):
        raise InputError(f"{path} is not a Middlebury .flo file (bad tag)")
    width, height = (int(v) for v in np.frombuffer(data[4:12], "<i4"))
    expected = header + width * height * 2 * 4
    if width <= 0 or height <= 0 or len(data) != expected:
        raise InputError(f"{path}: size {len(data)} bytes does not match {width}x{height} flow")
    return np.frombuffer(data[header:], "<f4").reshape(height, width, 2).astype(np.float32)


def write_kitti_flow(path: str | PathLike, flow: np.ndarray,
                     valid: np.ndarray | None = None, overwrite: bool = False) -> None:
    """Write a flow ``[H, W, 2]`` and validity ``[H, W]`` bool (default all) as a KITTI PNG,
    atomically. An existing ``path`` raises :class:`cwm.errors.OutputExistsError` unless
    ``overwrite``."""
    from cwm.video import import_cv2

    cv2 = import_cv2()

    flow = _check_flow(flow).astype(np.float64)
    valid = np.ones(flow.shape[:2], bool) if valid is None else np.asarray(valid, bool)
    if valid.shape != flow.shape[:2]:
        raise InputError(f"valid must have shape {flow.shape[:2]}, got {valid.shape}")
    coded = np.clip(np.rint(flow * KITTI_SCALE + KITTI_OFFSET), 0, 2 ** 16 - 1).astype(np.uint16)
    coded[~valid] = 0
    # OpenCV writes BGR order, so B, G, R = valid, dy, dx puts dx in the file's red channel.
    image = np.stack([valid.astype(np.uint16), coded[..., 1], coded[..., 0]], axis=-1)
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise InputError(f"cannot write KITTI flow PNG {path}: PNG encoding failed")
    with atomic_write(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(encoded.tobytes())


def read_kitti_flow(path: str | PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a KITTI flow PNG: flow ``[H, W, 2]`` float32 (0 where invalid), valid ``[H, W]``.

    Raises:
        InputError: unreadable, not an image, or not a 16-bit 3-channel image; nothing else
            escapes, whatever the file holds.
    """
    from cwm.video import check_readable, import_cv2

    cv2 = import_cv2()
    check_readable(path, "KITTI flow PNG")
    try:
        image = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    except OSError as exc:
        raise InputError(f"cannot read KITTI flow PNG '{path}': {exc.strerror or exc}") from None
    except cv2.error:
        image = None
    if image is None:
        raise InputError(f"cannot read KITTI flow PNG '{path}': not a decodable image")
    if image.dtype != np.uint16 or image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"{path} is not a 16-bit 3-channel KITTI flow PNG "
                         f"(got {image.dtype} {image.shape})")
    valid = image[..., 0] > 0
    flow = (image[..., [2, 1]].astype(np.float64) - KITTI_OFFSET) / KITTI_SCALE
    flow[~valid] = 0.0
    return flow.astype(np.float32), valid


@dataclass
class TapVidVideo:
    """One TAP-Vid video with point tracks, in pixels of the stored video.

    Attributes:
        name: the video key (DAVIS) or its index as a string (list layouts).
        video: ``[T, H, W, 3]`` uint8 RGB.
        tracks: ``[N, T, 2]`` float32 ``(x, y)`` pixels, pixel centres at integers: TAP-Vid's
            normalised coordinates (pixel centres at ``(i + 0.5) / W``) times ``(W, H)``, minus 0.5.
        occluded: ``[N, T]`` bool, True where the point is not visible.
        query_frames: ``[N]`` int, the first frame where each point is visible (TAP-Vid "first"
            query mode); -1 for a point never visible.
        query_xy: ``[N, 2]`` float32 ``(x, y)`` pixels of each point at its query frame.
    """

    name: str
    video: np.ndarray
    tracks: np.ndarray
    occluded: np.ndarray
    query_frames: np.ndarray
    query_xy: np.ndarray


_NUMPY_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
}
_BUILTIN_GLOBALS = {("builtins", name) for name in
                    ("dict", "list", "tuple", "set", "frozenset", "bytearray", "bytes", "str",
                     "int", "float", "complex", "bool")}
_SAFE_GLOBALS = _NUMPY_GLOBALS | _BUILTIN_GLOBALS | {("collections", "OrderedDict"),
                                                       ("_codecs", "encode")}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy array/dtype reconstruction and builtin containers."""

    def find_class(self, module: str, name: str):  # noqa: ANN201 (pickle API)
        if (module, name) not in _SAFE_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        if module.startswith("numpy.core.") or module.startswith("numpy._core."):
            import importlib

            # numpy 2 renamed numpy.core to numpy._core; accept pickles from either.
            suffix = module.split(".", 2)[2]
            for candidate in (f"numpy._core.{suffix}", f"numpy.core.{suffix}"):
                try:
                    return getattr(importlib.import_module(candidate), name)
                except (ImportError, AttributeError):
                    continue
        return super().find_class(module, name)


def safe_load_pickle(path: str | PathLike) -> object:
    """Unpickle a file that may only hold numpy arrays and builtin containers."""
    try:
        data = Path(path).read_bytes()
        return _RestrictedUnpickler(io.BytesIO(data)).load()
    except OSError as exc:
        raise InputError(f"cannot read pickle {path}: {exc.strerror}") from exc
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise InputError(f"unsafe or corrupt pickle {path}: {exc}") from exc


def _decode_video(path: str, video: object) -> np.ndarray:
    if isinstance(video, np.ndarray) and video.dtype == np.uint8 and video.ndim == 4:
        return video
    import cv2

    frames = []
    for encoded in video:                                  # encoded JPEG/PNG bytes per frame
        bgr = cv2.imdecode(np.frombuffer(bytes(encoded), np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise InputError(f"{path}: a video frame could not be decoded")
        frames.append(bgr[..., ::-1])
    return np.stack(frames)


def _to_video(path: str, name: str, entry: object) -> TapVidVideo:
    if not isinstance(entry, dict) or not {"video", "points", "occluded"} <= entry.keys():
        raise InputError(f"{path}: entry {name!r} needs keys 'video', 'points', 'occluded'")
    video = _decode_video(path, entry["video"])
    points = np.asarray(entry["points"], np.float64)
    occluded = np.asarray(entry["occluded"], bool)
    num_frames, height, width = video.shape[:3]
    if points.shape[1:] != (num_frames, 2) or occluded.shape != points.shape[:2]:
        raise InputError(f"{path}: entry {name!r} has points {points.shape} and occluded "
                         f"{occluded.shape} for {num_frames} frames")
    tracks = (points * np.array([width, height]) - 0.5).astype(np.float32)
    visible = ~occluded
    query_frames = np.where(visible.any(axis=1), visible.argmax(axis=1), -1)
    query_xy = tracks[np.arange(len(tracks)), np.maximum(query_frames, 0)]
    return TapVidVideo(name, video, tracks, occluded, query_frames, query_xy)


def read_tapvid(path: str | PathLike) -> list[TapVidVideo]:
    """Read a TAP-Vid pickle (DAVIS dict or Kinetics/RGB-Stacking list) safely."""
    data = safe_load_pickle(path)
    if isinstance(data, dict):
        items = [(str(key), value) for key, value in data.items()]
    elif isinstance(data, (list, tuple)):
        items = [(str(i), value) for i, value in enumerate(data)]
    else:
        raise InputError(f"{path}: expected a dict or list of videos, got {type(data).__name__}")
    return [_to_video(str(path), name, entry) for name, entry in items]
