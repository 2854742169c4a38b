"""Baseline pair trackers for :func:`probes.tracking.track_video` (numpy and OpenCV only).

Each is ``pair(frame_a, frame_b, points [N, 2]) -> (points_b [N, 2], visible [N])`` with frames
uint8 ``[H, W, 3]`` RGB and ``(x, y)`` pixels (centres at integers).

- :func:`zero_pair_tracker`: every point stays where it is and stays visible (the floor any
  tracker must beat).
- :func:`flow_pair_tracker`: a dense flow method (DIS by default), sampled bilinearly at the
  points; a point is visible unless forward-backward consistency fails there or it leaves the
  frame (:func:`cwm.baselines.forward_backward_occlusion`, nearest pixel).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cwm.baselines import dis_flow, forward_backward_occlusion


def zero_pair_tracker() -> Callable:
    """Points stay put and visible."""
    def pair(frame_a: np.ndarray, frame_b: np.ndarray, points: np.ndarray):
        points = np.asarray(points, np.float64).reshape(-1, 2)
        return points.copy(), np.ones(len(points), bool)

    return pair


def sample_field(field: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Bilinear samples ``[N, C]`` of ``field [H, W, C]`` at ``(x, y)`` points ``[N, 2]``
    (clamped to the pixel centres' range)."""
    h, w = field.shape[:2]
    x = np.clip(points[:, 0], 0, w - 1)
    y = np.clip(points[:, 1], 0, h - 1)
    x0 = np.minimum(np.floor(x).astype(np.int64), w - 2) if w > 1 else np.zeros(len(x), np.int64)
    y0 = np.minimum(np.floor(y).astype(np.int64), h - 2) if h > 1 else np.zeros(len(y), np.int64)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    f = field.astype(np.float64)
    top = f[y0, x0] * (1 - fx) + f[y0, x1] * fx
    bottom = f[y1, x0] * (1 - fx) + f[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def flow_pair_tracker(flow_fn: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
                      occlusion: bool = True) -> Callable:
    """Track with a dense flow ``flow_fn(frame_a, frame_b) -> [H, W, 2]`` (default DIS medium).

    ``occlusion``: mark points occluded by forward-backward consistency (costs a second flow);
    otherwise only points that leave the frame are occluded.
    """
    flow_fn = flow_fn or dis_flow

    def pair(frame_a: np.ndarray, frame_b: np.ndarray, points: np.ndarray):
        points = np.asarray(points, np.float64).reshape(-1, 2)
        h, w = frame_a.shape[:2]
        forward = flow_fn(frame_a, frame_b)
        moved = points + sample_field(forward, points)
        visible = ((moved[:, 0] >= -0.5) & (moved[:, 0] < w - 0.5)
                   & (moved[:, 1] >= -0.5) & (moved[:, 1] < h - 0.5))
        if occlusion:
            occ = forward_backward_occlusion(forward, flow_fn(frame_b, frame_a))
            cx = np.clip(np.rint(points[:, 0]).astype(np.int64), 0, w - 1)
            cy = np.clip(np.rint(points[:, 1]).astype(np.int64), 0, h - 1)
            visible &= ~occ[cy, cx]
        return moved, visible

    return pair
