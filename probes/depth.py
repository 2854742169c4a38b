"""Relative depth from two views by motion parallax, read out of the counterfactual flow.

Under a translating camera a static point at depth Z moves by ``f * T / Z`` pixels: nearer
surfaces move more. The flow comes from our own probe (:func:`probes.flow.flow`), so depth is a
CWM counterfactual too, with no depth network.

Modes and what each assumes:

- ``stereo=True``: a rectified pair, ``frame1`` the view of a camera moved along +x (the right
  view, as in :mod:`cwm.synthetic`). Points move left, and the disparity ``-dx`` is proportional
  to inverse depth for the whole image. Vertical flow should be ~0; where it is not, confidence
  drops.
- ``stereo=False`` (two frames of a moving camera): the scene is static and the camera
  translates. The dominant motion (``motion="homography"``: a plane seen by any camera, or
  ``"affine"``/``"similarity"``, or ``"none"``) is fitted with RANSAC (OpenCV) and removed;
  it absorbs camera rotation and zoom together with the parallax of the dominant plane. What is
  left is the plane-plus-parallax residual, whose magnitude grows with ``|1/Z - 1/Z_plane|``.
  The magnitude ranks surfaces as nearer when the dominant plane is the farthest surface (the
  usual background), and the plane itself comes out ~0 (its own slant is removed with it).
  Independently moving objects break the assumption: their own motion is read as parallax.
  ``motion="none"`` keeps the full flow magnitude, which is exact for a camera that translates
  without rotating or zooming (then the background keeps its depth order too).

Single-image depth is not derivable from a two-frame CWM: with frame 1 = frame 0 (a static
movie) the counterfactual flow is zero everywhere, so there is no parallax to read. Getting it
from one image needs a *camera* counterfactual (reveal frame-1 patches as a camera translation
would move them), but placing those patches already needs each patch's depth, which is the
unknown; it takes a model trained with camera motion as an input. So :func:`depth` asks for two
views and refuses two identical frames.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cwm import viz
from cwm.errors import ConfigError, InputError
from cwm.frames import to_tensor_pair
from probes import flow as flow_module  # looked up at call time: probes.flow.flow may be replaced (tests spy on it)
from probes.results import ArrayResult

MOTIONS = ("homography", "affine", "similarity", "none")
#: Vertical disparity (pixels) at which stereo confidence falls to exp(-1/2) of the flow's.
STEREO_VERTICAL_TOLERANCE = 1.0
#: RANSAC inlier threshold (pixels) of the dominant-motion fit.
RANSAC_THRESHOLD = 1.0
#: Flow samples per axis used for the dominant-motion fit.
FIT_SAMPLES = 48


@dataclass
class DepthResult(ArrayResult):
    """Relative depth of frame 0, at the input resolution.

    Attributes:
        inverse_depth: ``[H, W]`` float32, relative (larger means nearer, unknown scale; in the
            general mode relative to the removed dominant plane, see the module docstring).
        confidence: ``[H, W]`` float32 in [0, 1]: the flow probe's confidence, zero where frame 0
            is occluded in frame 1, lowered by vertical disparity in stereo mode.
        flow: ``[H, W, 2]`` float32 counterfactual flow ``(dx, dy)`` from frame 0 to frame 1.
        parallax: ``[H, W, 2]`` float32 the flow after removing the dominant motion (stereo: the
            flow itself).
        dominant_motion: ``[3, 3]`` float64 the removed map (frame-0 -> frame-1 pixels), or the
            identity.
        stereo: the mode used.
    """

    MAIN = "inverse_depth"
    inverse_depth: np.ndarray
    confidence: np.ndarray
    flow: np.ndarray
    parallax: np.ndarray
    dominant_motion: np.ndarray
    stereo: bool

    def visualize(self, cmap: str = "turbo") -> np.ndarray:
        """Colour-mapped inverse depth (warm = near), uint8 ``[H, W, 3]``."""
        return viz.depth_to_color(self.inverse_depth, cmap=cmap)


def depth(predictor, frame0, frame1, stereo: bool = False, motion: str = "homography",
          flow_options: dict | None = None) -> DepthResult:
    """Relative inverse depth of ``frame0`` from the parallax between two views.

    Args:
        predictor: a :class:`cwm.predictor.CWMPredictor` or any object with its probe attributes.
        frame0, frame1: one pair (numpy uint8 ``[H, W, 3]`` or torch ``[3, H, W]``), same size.
        stereo: a rectified stereo pair, ``frame1`` the right view (see the module docstring).
        motion: general mode: the dominant motion removed, one of :data:`MOTIONS`.
        flow_options: keyword arguments of :func:`probes.flow.flow`; raise ``max_flow`` (input
            pixels) when the largest disparity or parallax may exceed the probe's default.
    Raises:
        InputError: a batch, frames of different sizes, or two identical frames.
        ConfigError: an unknown ``motion``.
    """
    if motion not in MOTIONS:
        raise ConfigError(f"motion must be one of {MOTIONS} (got {motion!r})")
    check_depth_pair(frame0, frame1)
    result = flow_module.flow(predictor, frame0, frame1, **(flow_options or {}))
    return depth_from_flow(result[0] if isinstance(result, list) else result, stereo, motion)  # a batch of one


def check_depth_pair(frame0, frame1) -> None:
    """Raise InputError unless ``frame0, frame1`` are one pair of two different views."""
    t0, t1, _ = to_tensor_pair(frame0, frame1)
    if t0.shape[0] != 1:
        raise InputError(f"depth takes one frame pair, not a batch of {t0.shape[0]}")
    if bool((t0 == t1).all()):
        raise InputError("depth: frame0 and frame1 are identical, so there is no parallax; depth needs "
                         "two views of a moving camera (single-image depth is not available from a "
                         "two-frame CWM, see probes.depth)")


def depth_from_flow(result, stereo: bool = False, motion: str = "homography") -> DepthResult:
    """The depth read-out of :func:`depth` from a flow already measured between the two views.

    Args:
        result: a :class:`probes.results.FlowResult` of frame 0 to frame 1 (``flow [H, W, 2]``
            ``(dx, dy)``; ``occlusion`` and ``confidence [H, W]`` are used when present), e.g. the
            one :func:`probes.flow.flow` returned for the pair, so that flow, occlusion and
            depth of one pair share one probe run.
        stereo, motion: as for :func:`depth`.
    """
    if motion not in MOTIONS:
        raise ConfigError(f"motion must be one of {MOTIONS} (got {motion!r})")
    flow = np.asarray(result.flow, np.float32)
    confidence = _base_confidence(result, flow.shape[:2])
    if stereo:
        inverse = -flow[..., 0]
        confidence = confidence * np.exp(-0.5 * (flow[..., 1] / STEREO_VERTICAL_TOLERANCE) ** 2)
        parallax, dominant = flow, np.eye(3)
    else:
        dominant = dominant_motion(flow, confidence > 0, motion)
        parallax = flow - (_apply(dominant, flow.shape[:2]) - _pixel_grid(flow.shape[:2]))
        inverse = np.hypot(parallax[..., 0], parallax[..., 1])
    return DepthResult(inverse_depth=inverse.astype(np.float32),
                       confidence=np.clip(confidence, 0, 1).astype(np.float32),
                       flow=flow, parallax=parallax.astype(np.float32),
                       dominant_motion=dominant, stereo=bool(stereo))


def _base_confidence(result, size: tuple[int, int]) -> np.ndarray:
    conf = getattr(result, "confidence", None)
    conf = np.ones(size, np.float32) if conf is None else np.asarray(conf, np.float32)
    occluded = getattr(result, "occlusion", None)
    if occluded is not None:
        conf = np.where(np.asarray(occluded, bool), 0.0, conf)
    return conf


def _pixel_grid(size: tuple[int, int]) -> np.ndarray:
    ys, xs = np.mgrid[0:size[0], 0:size[1]].astype(np.float64)
    return np.stack([xs, ys], -1)


def _apply(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Where ``m`` (``[3, 3]``, homogeneous) sends every pixel: ``[H, W, 2]``."""
    p = _pixel_grid(size).reshape(-1, 2)
    q = np.c_[p, np.ones(len(p))] @ m.T
    return (q[:, :2] / q[:, 2:3]).reshape(*size, 2)


def dominant_motion(flow: np.ndarray, valid: np.ndarray, motion: str = "homography") -> np.ndarray:
    """RANSAC fit of the dominant motion of a flow field: ``[3, 3]`` frame-0 -> frame-1 pixels.

    Fits on a ``FIT_SAMPLES x FIT_SAMPLES`` grid of valid pixels; returns the identity for
    ``motion="none"``, or when too few points are valid or the fit fails.
    """
    import cv2

    if motion == "none":
        return np.eye(3)
    h, w = flow.shape[:2]
    ys = np.linspace(0, h - 1, min(h, FIT_SAMPLES)).round().astype(int)
    xs = np.linspace(0, w - 1, min(w, FIT_SAMPLES)).round().astype(int)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    keep = valid[yy, xx] & np.isfinite(flow[yy, xx]).all(-1)
    src = np.stack([xx[keep], yy[keep]], -1).astype(np.float32)
    dst = src + flow[yy[keep], xx[keep]].astype(np.float32)
    needed = {"homography": 4, "affine": 3, "similarity": 2}[motion]
    if len(src) < max(needed, 8):
        return np.eye(3)
    if motion == "homography":
        m, _ = cv2.findHomography(src, dst, cv2.RANSAC, RANSAC_THRESHOLD)
    elif motion == "affine":
        m, _ = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_THRESHOLD)
    else:
        m, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_THRESHOLD)
    if m is None or not np.isfinite(m).all():
        return np.eye(3)
    return m if m.shape == (3, 3) else np.vstack([m, [0.0, 0.0, 1.0]])
