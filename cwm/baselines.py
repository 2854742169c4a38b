"""Classical baselines run in the same harness as the CWM probes (OpenCV, no learning).

Flow methods share the signature ``(frame0, frame1) -> flow [H, W, 2]`` float32 ``(dx, dy)``,
with frames uint8 ``[H, W, 3]`` RGB; occlusion methods return ``[H, W]`` bool (True = the
frame-0 pixel is not visible in frame 1); depth methods return a relative inverse depth
``[H, W]`` float32 (larger = nearer).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cwm.errors import ConfigError, InputError

FlowMethod = Callable[[np.ndarray, np.ndarray], np.ndarray]

# Forward-backward consistency thresholds of Sundaram, Brox and Keutzer (ECCV 2010).
FB_ALPHA = 0.01
FB_BETA = 0.5
DIS_PRESETS = ("ultrafast", "fast", "medium")


def _check_pair(frame0: np.ndarray, frame1: np.ndarray) -> None:
    for name, frame in (("frame0", frame0), ("frame1", frame1)):
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise InputError(f"{name} must be uint8 [H, W, 3] RGB, got {frame.dtype} {frame.shape}")
    if frame0.shape != frame1.shape:
        raise InputError(f"frame0 and frame1 differ in shape: {frame0.shape} vs {frame1.shape}")


def _gray(frame: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)


def zero_flow(frame0: np.ndarray, frame1: np.ndarray) -> np.ndarray:
    """All-zero flow ``[H, W, 2]``: the floor every method must beat."""
    _check_pair(frame0, frame1)
    return np.zeros((*frame0.shape[:2], 2), np.float32)


def farneback_flow(frame0: np.ndarray, frame1: np.ndarray, pyr_scale: float = 0.5,
                   levels: int = 3, winsize: int = 15, iterations: int = 3, poly_n: int = 5,
                   poly_sigma: float = 1.2) -> np.ndarray:
    """OpenCV Farneback flow ``[H, W, 2]`` on grey frames (the parameters of OpenCV's tutorial)."""
    import cv2

    _check_pair(frame0, frame1)
    flow = cv2.calcOpticalFlowFarneback(_gray(frame0), _gray(frame1), None, pyr_scale, levels,
                                        winsize, iterations, poly_n, poly_sigma, 0)
    return flow.astype(np.float32)


def dis_flow(frame0: np.ndarray, frame1: np.ndarray, preset: str = "medium") -> np.ndarray:
    """OpenCV DIS flow ``[H, W, 2]`` on grey frames; ``preset`` in ultrafast/fast/medium."""
    import cv2

    _check_pair(frame0, frame1)
    if preset not in DIS_PRESETS:
        raise ConfigError(f"unknown DIS preset {preset!r}; choose from {DIS_PRESETS}")
    code = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
            "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
            "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}[preset]
    dis = cv2.DISOpticalFlow_create(code)
    return dis.calc(_gray(frame0), _gray(frame1), None).astype(np.float32)


def forward_backward_occlusion(forward: np.ndarray, backward: np.ndarray,
                               alpha: float = FB_ALPHA, beta: float = FB_BETA) -> np.ndarray:
    """Occlusion ``[H, W]`` bool from a forward and a backward flow ``[H, W, 2]``.

    A frame-0 pixel x is occluded when ``|f(x) + b(x + f(x))|^2 > alpha (|f|^2 + |b|^2) + beta``
    (b sampled bilinearly), or when ``x + f(x)`` leaves the frame: the convention of
    ``cwm.synthetic``, where out-of-frame pixels count as occluded.
    """
    import cv2

    height, width = forward.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    end_x, end_y = xs + forward[..., 0], ys + forward[..., 1]
    back = cv2.remap(backward.astype(np.float32), end_x, end_y, cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)
    mismatch = np.sum((forward + back) ** 2, axis=-1)
    bound = alpha * (np.sum(forward ** 2, axis=-1) + np.sum(back ** 2, axis=-1)) + beta
    half = 0.5
    outside = (end_x < -half) | (end_x >= width - half) | (end_y < -half) | (end_y >= height - half)
    return (mismatch > bound) | outside


def dis_occlusion(frame0: np.ndarray, frame1: np.ndarray) -> np.ndarray:
    """Occlusion ``[H, W]`` bool by forward-backward consistency of DIS (medium) flow."""
    return forward_backward_occlusion(dis_flow(frame0, frame1), dis_flow(frame1, frame0))


def dis_inverse_depth(frame0: np.ndarray, frame1: np.ndarray) -> np.ndarray:
    """Relative inverse depth ``[H, W]`` of a rectified stereo pair: DIS disparity.

    ``frame1`` is the view of a camera moved along +x (the right view), so scene points move
    left and the disparity ``-dx`` is proportional to inverse depth.
    """
    return -dis_flow(frame0, frame1)[..., 0]


FLOW_BASELINES: dict[str, FlowMethod] = {
    "zero": zero_flow,
    "farneback": farneback_flow,
    "dis": dis_flow,
}
OCCLUSION_BASELINES = {"dis_fb": dis_occlusion}
DEPTH_BASELINES = {"dis_disparity": dis_inverse_depth}
