"""Image and video input/output.

Every array crossing this module's boundary is numpy uint8 RGB: images ``[H, W, 3]`` and video
frames ``[N, H, W, 3]`` (never OpenCV's BGR). Problems with the user's files raise
:class:`~cwm.errors.InputError` with a one-line message naming the file and the reason.
Heavy libraries (PIL, cv2, decord, av) are imported inside the functions that use them.
"""
from __future__ import annotations

import os
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Iterable

import numpy as np

from cwm.atomic import atomic_write
from cwm.errors import ConfigError, InputError
from cwm.video import (BACKENDS, VideoReader, check_readable, default_backends, import_cv2,
                       open_video)
from cwm.video import one_line as _one_line

__all__ = [
    "BACKENDS", "IMAGE_EXTENSIONS", "VIDEO_EXTENSIONS", "VideoReader", "atomic_write",
    "default_backends", "is_image_path", "is_video_path", "load_frame_pair", "open_video",
    "read_image", "write_image", "write_video",
]

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm"})
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
_PIL_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF",
                ".tiff": "TIFF", ".webp": "WEBP"}
_CONTAINERS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}
_PYAV_CODECS = {ext: ("libx264",) for ext in _CONTAINERS} | {".webm": ("libvpx-vp9", "libvpx")}
_OPENCV_FOURCC = {".avi": "MJPG", ".webm": "VP80"}  # else mp4v (MPEG-4 Part 2)
#: JPEG/WebP quality of write_image and the x264 constant-rate factor of write_video: chosen to
#: be visually lossless for figures, which matter more here than file size.
JPEG_QUALITY = 95
X264_CRF = 18
#: EXIF orientation tag value -> PIL transpose method (the table ImageOps.exif_transpose uses).
_EXIF_TRANSPOSE = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE",
                   6: "ROTATE_270", 7: "TRANSVERSE", 8: "ROTATE_90"}


def is_video_path(path: str | os.PathLike) -> bool:
    """True if ``path`` has a video extension (mp4, avi, mov, mkv, webm; any case)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def is_image_path(path: str | os.PathLike) -> bool:
    """True if ``path`` has an image extension (png, jpg, jpeg, bmp, tif, tiff, webp; any case)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------
def read_image(path: str | os.PathLike, max_side: int | None = None) -> np.ndarray:
    """Read an image file as uint8 RGB ``[H, W, 3]``.

    Conversion policy, whatever the file holds:
      - grayscale (1-bit, 8-bit, 16-bit) is replicated to three channels;
      - palette images are expanded through their palette;
      - alpha is dropped, not composited (transparent pixels show their stored colour, as with
        ``cv2.imread``);
      - 16-bit samples become 8-bit by keeping the high byte (``v >> 8``; exact for images that
        were widened by ``v * 257``), which is also what PIL and OpenCV do for 16-bit RGB;
      - the EXIF orientation tag is applied, so photos come out upright;
      - CMYK, YCbCr and other colour modes are converted by PIL.

    Args:
        path: the image file.
        max_side: if given, shrink the image (keeping its aspect ratio, with antialiasing) so
            that its longer side is at most ``max_side``. JPEGs are then decoded at reduced
            scale directly (PIL ``draft``), so even huge photos cost little memory; other
            formats are decoded once at full size (about 4 bytes per pixel) and reduced.
    Returns:
        uint8 ``[H, W, 3]`` RGB array.
    Raises:
        InputError: missing path, a folder, no read permission, empty file, undecodable or
            truncated data, or more pixels than PIL's decompression-bomb limit.
    """
    return _read_image(path, max_side)[0]


def _read_image(path: str | os.PathLike, max_side: int | None) -> tuple[np.ndarray, tuple[int, int]]:
    """:func:`read_image`, plus the image's upright ``(H, W)`` before any shrinking."""
    from PIL import Image

    if max_side is not None and (not isinstance(max_side, (int, np.integer)) or max_side < 1):
        raise ConfigError(f"max_side must be a positive integer, got {max_side!r}")
    check_readable(path, "image")
    try:
        with warnings.catch_warnings():
            # Between PIL's warning (89M px) and error (179M px) limits the image is read like
            # any other (max_side bounds its memory); the 2-line warning would break the one-line rule.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            src = Image.open(path)
        with src:
            im, size = _decode_pil(src, max_side)
            pixels = np.asarray(im)  # a read-only view of a bytes copy
        # src is closed (its pixel memory freed) before this copy, the only other full one.
        return pixels.copy(), size
    except Image.DecompressionBombError as e:
        raise InputError(f"cannot read image '{path}': too many pixels to decode safely ({e})") from None
    except Image.UnidentifiedImageError:
        raise InputError(f"cannot read image '{path}': not a recognised image format") from None
    except (OSError, ValueError, SyntaxError) as e:  # PIL's decoders use all three
        raise InputError(f"cannot read image '{path}': undecodable data ({_one_line(e)})") from None


def _decode_pil(im, max_side: int | None):
    """PIL.Image -> (PIL.Image "RGB", upright and shrunk; its upright ``(H, W)`` before shrinking)."""
    from PIL import Image

    w, h = im.size
    if max_side is not None:
        im.draft("RGB", (max_side, max_side))  # JPEG only: DCT-domain downscale while decoding
    orientation = im.getexif().get(0x0112, 1)  # read before conversion drops the metadata
    im = _to_8bit_rgb(im)
    if max_side is not None and max(im.size) > max_side:
        im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=2.0)
    if orientation in _EXIF_TRANSPOSE:  # after shrinking: cheaper, and the box is square
        im = im.transpose(getattr(Image.Transpose, _EXIF_TRANSPOSE[orientation]))
        if orientation >= 5:  # the transposes and rotations by 90 degrees swap the sides
            w, h = h, w
    return im, (h, w)


def _to_8bit_rgb(im):  # PIL.Image -> PIL.Image in mode "RGB"
    """Apply read_image's conversion policy (see its docstring) to an open PIL image."""
    from PIL import Image

    if im.mode.startswith("I"):  # "I;16", "I;16B", "I;16L", "I" (32-bit): 16-bit grayscale
        a = np.asarray(im)
        if a.dtype != np.uint16:
            a = np.clip(a, 0, 65535).astype(np.uint16)
        im = Image.fromarray((a >> 8).astype(np.uint8), "L")
    if im.mode == "RGB":
        im.load()
        return im
    return im.convert("RGB")  # L, 1, P, PA, LA, RGBA, CMYK, YCbCr, F: alpha is dropped


def write_image(path: str | os.PathLike, img: np.ndarray, overwrite: bool = False) -> None:
    """Write an image atomically; the format follows the extension (png, jpg/jpeg, bmp, tif, webp).

    PNG, BMP and TIFF are lossless: :func:`read_image` returns exactly ``img``. JPEG and WebP
    use quality :data:`JPEG_QUALITY`.

    Args:
        path: destination file; missing parent folders are created.
        img: uint8 ``[H, W, 3]`` RGB, or ``[H, W]`` grayscale.
        overwrite: replace an existing file; otherwise an existing file raises ``InputError``.
    """
    from PIL import Image

    fmt = _PIL_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise InputError(f"cannot write image '{path}': unknown extension "
                         f"(use one of {', '.join(sorted(_PIL_FORMATS))})")
    img = np.asarray(img)
    if img.dtype != np.uint8 or not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)):
        raise InputError(f"cannot write image '{path}': expected uint8 [H, W, 3] or [H, W], "
                         f"got {img.dtype} {list(img.shape)}")
    options = {"quality": JPEG_QUALITY} if fmt in ("JPEG", "WEBP") else {}
    if fmt == "WEBP":
        options["lossless"] = False
    with atomic_write(path, overwrite=overwrite) as tmp:
        Image.fromarray(np.ascontiguousarray(img)).save(tmp, format=fmt, **options)


# ---------------------------------------------------------------------------------------------
# Video writing
# ---------------------------------------------------------------------------------------------
def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float,
                overwrite: bool = False) -> int:
    """Stream frames into a video file atomically and return how many were written.

    mp4/mov/mkv/avi get H.264 (``libx264``, CRF :data:`X264_CRF`, yuv420p, faststart) and webm
    gets VP9 (else VP8), through PyAV; without PyAV or those encoders, OpenCV writes MPEG-4
    Part 2 (``mp4v``; MJPG for avi, VP8 for webm). Frames are consumed one at a time, so
    memory stays constant.
    H.264/yuv420p needs even sizes: an odd height or width is padded by repeating the last
    row or column, so such a video reads back one pixel larger.

    Args:
        path: destination file (mp4, avi, mov, mkv or webm).
        frames: iterable of uint8 ``[H, W, 3]`` RGB frames, all the same size.
        fps: frames per second (> 0).
        overwrite: replace an existing file; otherwise an existing file raises ``InputError``.
    Returns:
        the number of frames written.
    Raises:
        InputError: unknown extension, no frames, a frame of the wrong dtype, shape or size,
            or no working encoder. (PyAV's VP8/VP9 encoders break if decord was imported
            before PyAV; cwm imports them in the safe order, but a user's script may not.)
    """
    ext = Path(path).suffix.lower()
    if ext not in _CONTAINERS:
        raise InputError(f"cannot write video '{path}': unknown extension "
                         f"(use one of {', '.join(sorted(_CONTAINERS))})")
    if not np.isfinite(fps) or fps <= 0:
        raise ConfigError(f"fps must be a positive number, got {fps!r}")
    with atomic_write(path, overwrite=overwrite) as tmp:  # refuses an existing file up front
        frames = iter(frames)
        first = next(frames, None)
        if first is None:
            raise InputError(f"cannot write video '{path}': no frames to write")
        first = _check_frame(path, first, None, 0)
        for codec in _PYAV_CODECS[ext]:
            if _pyav_has_encoder(codec):
                return _write_pyav(tmp, path, first, frames, fps, codec, _CONTAINERS[ext])
        return _write_opencv(tmp, path, first, frames, fps, ext)


def _check_frame(path, frame, size: tuple[int, int] | None, i: int) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise InputError(f"cannot write video '{path}': frame {i} must be uint8 [H, W, 3], "
                         f"got {frame.dtype} {list(frame.shape)}")
    if size is not None and frame.shape[:2] != size:
        raise InputError(f"cannot write video '{path}': frame {i} is {frame.shape[1]}x"
                         f"{frame.shape[0]}, frame 0 is {size[1]}x{size[0]}")
    return frame


def _pad_even(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def _pyav_has_encoder(codec: str) -> bool:
    """True if PyAV is installed and ``codec`` opens (a library clash can break an encoder that
    PyAV lists, e.g. libvpx-vp9 after decord was imported first)."""
    try:
        import av

        ctx = av.CodecContext.create(codec, "w")
        ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = 64, 64, "yuv420p", Fraction(1, 25)
        ctx.open()
        return True
    except Exception:  # PyAV missing, or built without this encoder, or it fails to open
        return False


def _write_pyav(tmp: Path, path, first, frames, fps, codec: str, container_format: str) -> int:
    import av

    size = first.shape[:2]
    options = {"movflags": "+faststart"} if container_format in ("mp4", "mov") else {}
    with av.open(str(tmp), "w", format=container_format, options=options) as out:
        stream = out.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.height, stream.width = _pad_even(first).shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = ({"crf": str(X264_CRF)} if codec == "libx264"
                          else {"deadline": "realtime", "cpu-used": "8"})
        n = 0
        for i, frame in enumerate(_chain(first, frames)):
            frame = _pad_even(_check_frame(path, frame, size, i))
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
            n += 1
        for packet in stream.encode():
            out.mux(packet)
    return n


def _write_opencv(tmp: Path, path, first, frames, fps, ext: str) -> int:
    cv2 = import_cv2()

    fourcc = _OPENCV_FOURCC.get(ext, "mp4v")
    h, w = first.shape[:2]
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*fourcc), float(fps), (w, h))
    if not writer.isOpened():
        raise InputError(f"cannot write video '{path}': no working encoder (tried PyAV "
                         f"{', '.join(_PYAV_CODECS[ext])} and OpenCV {fourcc})")
    n = 0
    try:
        for i, frame in enumerate(_chain(first, frames)):
            frame = _check_frame(path, frame, (h, w), i)
            writer.write(np.ascontiguousarray(frame[:, :, ::-1]))  # RGB -> BGR
            n += 1
    finally:
        writer.release()
    return n


def _chain(first, rest):
    yield first
    yield from rest


# ---------------------------------------------------------------------------------------------
# Frame pairs
# ---------------------------------------------------------------------------------------------
def load_frame_pair(a: str | os.PathLike, b: str | os.PathLike | None = None,
                    gap: int = 1, max_side: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load the two frames a CWM compares.

    Args:
        a: a video, or the first image.
        b: the second image (only with an image ``a``).
        gap: for a video, the frames returned are ``0`` and ``gap``.
        max_side: images only: shrink each while reading, as :func:`read_image` does, so a
            huge image never exists at full size in RGB (video frames come at stored size).
    Returns:
        ``(frame0, frame1)``, each uint8 ``[H, W, 3]`` RGB, of equal size.
    Raises:
        InputError: a video shorter than ``gap + 1`` frames, a single image, two images of
            different sizes, or any read error.
    """
    if not isinstance(gap, (int, np.integer)) or gap < 1:
        raise ConfigError(f"gap must be a positive integer, got {gap!r}")
    if b is None:
        if is_image_path(a):
            raise InputError(f"need two frames, got one image '{a}': "
                             "pass a second image or a video")
        with open_video(a, min_frames=gap + 1) as video:
            pair = video.get([0, gap])
        return pair[0], pair[1]
    if is_video_path(a) or is_video_path(b):
        raise InputError(f"pass either one video or two images, got '{a}' and '{b}'")
    (f0, size0), (f1, size1) = _read_image(a, max_side), _read_image(b, max_side)
    if size0 != size1:  # compared at stored size: shrinking could make different sizes agree
        raise InputError(f"frame sizes differ: {a} is {size0[1]}x{size0[0]}, "
                         f"{b} is {size1[1]}x{size1[0]}")
    return f0, f1

