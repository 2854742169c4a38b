"""Typed results of the probes: arrays in the user's pixels, plus save and draw.

Every result (:class:`FlowResult`, :class:`TrackResult`, :class:`SegmentResult`,
:class:`probes.depth.DepthResult`, :class:`probes.keypoints.KeypointResult`,
:class:`probes.tracking.VideoTrackResult`) follows one contract (:class:`ArrayResult`):
``numpy()`` is its main array (flow, tracks, inverse depth, masks, keypoints), ``arrays()`` the
dict of all its arrays (the keys of its ``.npz``), ``save(path, overwrite=False)`` writes by
extension, atomically, and ``visualize()`` draws it (uint8 ``[H, W, 3]``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import ClassVar

import numpy as np

from cwm import viz
from cwm.atomic import atomic_write
from cwm.errors import InputError
from cwm.flowio import write_flo
from cwm.io import write_image


def _check_image(image, size: tuple[int, int], name: str) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[:2] != tuple(size) or image.shape[2] != 3:
        raise InputError(f"{name}: expected uint8 [{size[0]}, {size[1]}, 3] RGB (got {image.dtype} {image.shape})")
    return image


class ArrayResult:
    """The array side of the result contract: :attr:`MAIN` names the main array."""

    MAIN: ClassVar[str]

    def numpy(self) -> np.ndarray:
        """The main array (see the class's attributes)."""
        return getattr(self, self.MAIN)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array of the result by field name (the keys its ``.npz`` holds)."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.repr and isinstance(getattr(self, f.name), np.ndarray)}

    def visualize(self) -> np.ndarray:
        """The result drawn as a uint8 ``[H, W, 3]`` image (each result draws its own)."""
        raise NotImplementedError

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> None:
        """Write by extension, atomically: the main array (``.npy``), all arrays (``.npz``, keys
        as :meth:`arrays`) or the drawing of :meth:`visualize` (``.png``, ``.jpg``, ...).

        Raises:
            OutputExistsError: ``path`` exists and ``overwrite`` is False.
            InputError: ``path`` cannot be written, or an image type the writer does not know.
        """
        path = Path(path)
        ext = path.suffix.lower()
        if ext in (".npy", ".npz"):
            save_arrays(path, self.numpy() if ext == ".npy" else self.arrays(), overwrite)
            return
        write_image(path, self.visualize(), overwrite=overwrite)


@dataclass
class FlowResult(ArrayResult):
    """Dense optical flow of one frame pair, at the input resolution.

    Attributes:
        flow: ``[H, W, 2]`` float32 ``(dx, dy)`` pixels from frame 0 to frame 1.
        occlusion: ``[H, W]`` bool, True where the frame-0 pixel is not visible in frame 1.
        confidence: ``[H, W]`` float32 in [0, 1], the peak response over the typical peak
            (about 1 for clearly visible points, near 0 for occluded ones).
    """

    MAIN = "flow"
    flow: np.ndarray
    occlusion: np.ndarray
    confidence: np.ndarray

    def visualize(self, frame0: np.ndarray | None = None) -> np.ndarray:
        """Middlebury colour-coded flow, uint8 ``[H, W, 3]``; with ``frame0`` (uint8 RGB), the
        frame with occluded pixels in magenta beside it (``[H, 2W, 3]``)."""
        color = viz.flow_to_color(self.flow)
        if frame0 is None:
            return color
        frame0 = _check_image(frame0, self.flow.shape[:2], "frame0")
        return np.concatenate([viz.occlusion_overlay(frame0, self.occlusion), color], axis=1)

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> None:
        """Write by extension, atomically: ``.npy`` (flow ``[H, W, 2]`` float32), ``.npz`` (all
        arrays, keys as :meth:`arrays`), ``.flo`` (Middlebury) or ``.png`` (colour-coded flow).

        Raises:
            OutputExistsError: ``path`` exists and ``overwrite`` is False.
            InputError: an unknown extension, or ``path`` cannot be written.
        """
        path = Path(path)
        ext = path.suffix.lower()
        if ext == ".flo":
            write_flo(path, self.flow, overwrite=overwrite)
        elif ext == ".png":
            write_image(path, self.visualize(), overwrite=overwrite)
        elif ext in (".npy", ".npz"):
            save_arrays(path, self.flow if ext == ".npy" else self.arrays(), overwrite)
        else:
            raise InputError(f"{path}: unknown flow file type {ext!r} (use .npy, .npz, .flo or .png)")


@dataclass
class TrackResult(ArrayResult):
    """Where query points of frame 0 went in frame 1, in the input's pixels.

    Attributes:
        points: ``[N, 2]`` float32 query points ``(x, y)`` in frame 0.
        tracks: ``[N, 2]`` float32 their positions ``(x, y)`` in frame 1.
        visible: ``[N]`` bool, False where the point is occluded in frame 1.
        confidence: ``[N]`` float32 in [0, 1] (see :class:`FlowResult`).
    """

    MAIN = "tracks"
    points: np.ndarray
    tracks: np.ndarray
    visible: np.ndarray
    confidence: np.ndarray

    @property
    def displacement(self) -> np.ndarray:
        """``[N, 2]`` float32 ``(dx, dy)`` = tracks - points."""
        return self.tracks - self.points

    def visualize(self, frame1: np.ndarray) -> np.ndarray:
        """``frame1`` (uint8 RGB) with an arrow from each query point to its track: green when
        visible, red when occluded."""
        import cv2

        out = _check_image(frame1, frame1.shape[:2], "frame1").copy()
        for (x0, y0), (x1, y1), vis in zip(self.points, self.tracks, self.visible):
            color = (0, 200, 0) if vis else (220, 0, 0)
            cv2.arrowedLine(out, (int(round(x0)), int(round(y0))), (int(round(x1)), int(round(y1))),
                            color, 1, cv2.LINE_AA, tipLength=0.3)
        return out

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> None:
        """Write by extension, atomically: ``.npz`` (all arrays, keys as :meth:`arrays`) or ``.npy``
        (tracks ``[N, 2]``).

        Raises:
            OutputExistsError: ``path`` exists and ``overwrite`` is False.
            InputError: an unknown extension, or ``path`` cannot be written.
        """
        path = Path(path)
        ext = path.suffix.lower()
        if ext not in (".npz", ".npy"):
            raise InputError(f"{path}: unknown track file type {path.suffix!r} (use .npz or .npy)")
        save_arrays(path, self.tracks if ext == ".npy" else self.arrays(), overwrite)


def save_arrays(path: Path, arrays: np.ndarray | dict[str, np.ndarray], overwrite: bool) -> None:
    """One array as ``.npy`` or several as a compressed ``.npz``, written atomically."""
    with atomic_write(path, overwrite=overwrite) as tmp, open(tmp, "wb") as fh:
        if isinstance(arrays, dict):
            np.savez_compressed(fh, **arrays)
        else:
            np.save(fh, arrays)


@dataclass
class SegmentResult(ArrayResult):
    """Spelke segments of one image, at the input's resolution.

    Attributes:
        masks: ``[N, H, W]`` bool, one per prompt point (or per object found).
        scores: ``[N]`` float32, the mean raw affinity inside each mask: about 1 when the
            segment followed the poke fully, lower when it moved partly or not at all.
        points: ``[N, 2]`` float32 ``(x, y)`` prompt points (or the chosen ones), input pixels.
        affinity: ``[N, H, W]`` float32 normalised affinity in [0, 1] before thresholding.
        thresholds: ``[N]`` float32 threshold applied to each affinity map.
        cost: predictor work spent, in batch items: ``{"forwards", "jvps", "vjps"}`` (plain
            forwards; forward-mode items, one per tangent; forwards that build a reverse-mode
            graph, whose backward passes are not counted).
        image: the input image, uint8 ``[H, W, 3]`` (for :meth:`visualize`).
    """

    MAIN = "masks"
    masks: np.ndarray
    scores: np.ndarray
    points: np.ndarray
    affinity: np.ndarray
    thresholds: np.ndarray
    cost: dict[str, int]
    image: np.ndarray = field(repr=False)

    def visualize(self) -> np.ndarray:
        """The image with each mask tinted in its own colour and the points drawn: uint8 ``[H, W, 3]``."""
        out = viz.overlay_segments(self.image, self.masks) if len(self.masks) else self.image.copy()
        return viz.points_overlay(out, self.points, radius=max(2, min(self.image.shape[:2]) // 64))
