"""Visualisation of flows, masks, occlusion, depth and points (numpy + OpenCV).

Every function takes and returns uint8 RGB images ``[H, W, 3]`` and never modifies its inputs.
Colours are RGB tuples. Points are ``(x, y) = (column, row)`` pixels. OpenCV is imported lazily
(its drawing calls only write channel values, so they work on RGB arrays unchanged).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from cwm.errors import InputError

#: Segments of the Middlebury colour wheel (Baker et al. 2011): red-yellow, yellow-green,
#: green-cyan, cyan-blue, blue-magenta, magenta-red; 55 colours in all.
WHEEL_SEGMENTS = (15, 6, 4, 11, 13, 6)
#: Percentile of flow magnitudes used as the default saturation (robust to a few outliers).
ROBUST_PERCENTILE = 99.0
#: Colours the wheel code gives to magnitudes beyond max_flow are darkened by this factor.
OUT_OF_RANGE_DIM = 0.75
_COLORMAPS = ("turbo", "magma", "inferno", "viridis", "plasma", "jet")


def color_wheel() -> np.ndarray:
    """The 55-colour Middlebury wheel, float ``[55, 3]`` RGB in [0, 255], as in Baker's code."""
    ry, yg, gc, cb, bm, mr = WHEEL_SEGMENTS
    ramp = lambda n: np.floor(255 * np.arange(n) / n)  # noqa: E731
    full = lambda n: np.full(n, 255.0)  # noqa: E731
    zero = lambda n: np.zeros(n)  # noqa: E731
    return np.concatenate([
        np.stack([full(ry), ramp(ry), zero(ry)], 1),        # red -> yellow
        np.stack([255 - ramp(yg), full(yg), zero(yg)], 1),  # yellow -> green
        np.stack([zero(gc), full(gc), ramp(gc)], 1),        # green -> cyan
        np.stack([zero(cb), 255 - ramp(cb), full(cb)], 1),  # cyan -> blue
        np.stack([ramp(bm), zero(bm), full(bm)], 1),        # blue -> magenta
        np.stack([full(mr), zero(mr), 255 - ramp(mr)], 1),  # magenta -> red
    ])


def flow_to_color(flow: np.ndarray, max_flow: float | None = None) -> np.ndarray:
    """Colour-code a flow field with the Middlebury wheel.

    Hue is the direction (``(1, 0)``, rightward, is red; downward ``(0, 1)`` is green-yellow),
    saturation grows with magnitude up to ``max_flow``: zero motion is white. As in the
    reference code, magnitudes beyond ``max_flow`` keep full saturation and are darkened by
    :data:`OUT_OF_RANGE_DIM`; non-finite (unknown) vectors are black.

    Args:
        flow: ``[H, W, 2]`` ``(dx, dy)`` pixels.
        max_flow: magnitude drawn at full saturation; default the :data:`ROBUST_PERCENTILE`-th
            percentile of the finite magnitudes (their maximum if that is 0).
    Returns:
        uint8 ``[H, W, 3]`` RGB.
    """
    flow = np.asarray(flow, dtype=np.float64)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise InputError(f"flow must be [H, W, 2] (dx, dy), got shape {list(flow.shape)}")
    finite = np.isfinite(flow).all(axis=2)
    u, v = np.where(finite, flow[..., 0], 0.0), np.where(finite, flow[..., 1], 0.0)
    rad = np.hypot(u, v)
    if max_flow is None:
        mags = rad[finite]
        max_flow = float(np.percentile(mags, ROBUST_PERCENTILE)) if mags.size else 0.0
        max_flow = max_flow or (float(mags.max()) if mags.size else 0.0) or 1.0
    if not max_flow > 0:
        raise InputError(f"max_flow must be positive, got {max_flow}")
    # "+ 0.0" turns -0.0 into +0.0, so a purely horizontal vector always takes the wheel's
    # first colour (the reference's arctan2 would give (-1, -0.0) the last one).
    u, v = u / max_flow + 0.0, v / max_flow + 0.0
    rad = np.sqrt(u * u + v * v)  # as the reference computes it, so floor() agrees exactly
    wheel = color_wheel() / 255.0
    n = len(wheel)
    angle = np.arctan2(-v, -u) / np.pi  # in [-1, 1]; -1 (and +1) is rightward motion
    fk = (angle + 1) / 2 * (n - 1)
    k0 = np.floor(fk).astype(np.int64)
    k1 = np.where(k0 + 1 == n, 0, k0 + 1)
    f = (fk - k0)[..., None]
    col = (1 - f) * wheel[k0] + f * wheel[k1]  # [H, W, 3]
    inside = (rad <= 1)[..., None]
    col = np.where(inside, 1 - rad[..., None] * (1 - col), col * OUT_OF_RANGE_DIM)
    out = np.floor(255 * col).astype(np.uint8)
    out[~finite] = 0
    return out


def flow_legend(size: int = 128) -> np.ndarray:
    """The colour-wheel key, uint8 ``[size, size, 3]``.

    A disc whose pixel at offset ``(dx, dy)`` from the centre shows the colour of that flow,
    with the rim at full saturation (``max_flow``); white outside.
    """
    c = (size - 1) / 2
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    flow = np.stack([x - c, y - c], axis=-1) / max(c, 1e-9)
    img = flow_to_color(flow, max_flow=1.0)
    img[np.hypot(flow[..., 0], flow[..., 1]) > 1] = 255
    return img


def draw_arrows(image: np.ndarray, flow: np.ndarray, step: int = 16,
                color: tuple[int, int, int] = (0, 255, 0), scale: float = 1.0,
                thickness: int = 1, min_length: float = 0.5) -> np.ndarray:
    """Draw flow arrows on a grid of cell centres every ``step`` pixels.

    Args:
        image: uint8 ``[H, W, 3]`` RGB.
        flow: ``[H, W, 2]`` ``(dx, dy)``, same H and W.
        step: grid spacing in pixels.
        color: RGB arrow colour.
        scale: arrows are ``scale`` times the flow.
        min_length: vectors shorter than this (pixels, after scaling) are not drawn.
    Returns:
        a new uint8 ``[H, W, 3]`` image.
    """
    import cv2

    out = _rgb(image, "image").copy()
    flow = np.asarray(flow, dtype=np.float64)
    _same_size(out, flow, "flow")
    h, w = out.shape[:2]
    for y in range(step // 2, h, step):
        for x in range(step // 2, w, step):
            dx, dy = flow[y, x] * scale
            if np.isfinite(dx) and np.isfinite(dy) and np.hypot(dx, dy) >= min_length:
                cv2.arrowedLine(out, (x, y), (int(round(x + dx)), int(round(y + dy))),
                                tuple(int(c) for c in color), thickness, cv2.LINE_AA,
                                tipLength=0.3)
    return out


def overlay_mask(image: np.ndarray, mask: np.ndarray, color: tuple[int, int, int] = (255, 0, 0),
                 alpha: float = 0.5, outline: bool = True) -> np.ndarray:
    """Tint ``mask`` (bool ``[H, W]``) with ``color`` at opacity ``alpha``; outline it if asked."""
    import cv2

    out = _rgb(image, "image").copy()
    mask = np.asarray(mask).astype(bool)
    _same_size(out, mask, "mask")
    tint = np.asarray(color, dtype=np.float64)
    out[mask] = np.round((1 - alpha) * out[mask] + alpha * tint).astype(np.uint8)
    if outline and mask.any():
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, tuple(int(c) for c in color), 1)
    return out


def distinct_colors(n: int) -> np.ndarray:
    """``n`` well-separated RGB colours (golden-ratio hue steps), uint8 ``[n, 3]``."""
    import cv2

    if n == 0:
        return np.zeros((0, 3), np.uint8)
    hues = (np.arange(n) * 0.618033988749895) % 1.0
    hsv = np.stack([hues * 180, np.full(n, 220), np.full(n, 255)], -1).astype(np.uint8)
    return cv2.cvtColor(hsv[None], cv2.COLOR_HSV2RGB)[0]


def overlay_segments(image: np.ndarray, masks: np.ndarray, alpha: float = 0.5,
                     colors: np.ndarray | None = None) -> np.ndarray:
    """Overlay ``masks`` (bool ``[N, H, W]``), each in its own colour; later masks on top.

    ``colors`` (``[N, 3]`` RGB) defaults to :func:`distinct_colors`.
    """
    masks = np.asarray(masks).astype(bool)
    if masks.ndim != 3:
        raise InputError(f"masks must be [N, H, W], got shape {list(masks.shape)}")
    colors = distinct_colors(len(masks)) if colors is None else np.asarray(colors)
    out = _rgb(image, "image")
    for mask, color in zip(masks, colors):
        out = overlay_mask(out, mask, tuple(int(c) for c in color), alpha)
    return out


def occlusion_overlay(image: np.ndarray, occlusion: np.ndarray,
                      color: tuple[int, int, int] = (255, 0, 255),
                      alpha: float = 0.6) -> np.ndarray:
    """Mark occluded pixels (bool ``[H, W]``, True = occluded) in magenta."""
    return overlay_mask(image, occlusion, color, alpha, outline=False)


def depth_to_color(inverse_depth: np.ndarray, cmap: str = "turbo",
                   percentiles: tuple[float, float] = (1.0, 99.0)) -> np.ndarray:
    """Colour-map inverse depth (``[H, W]``, larger = nearer) with an OpenCV colormap.

    The range is stretched between the given percentiles of the finite values, so nearer is
    warmer/brighter; non-finite values are black. ``cmap`` is one of turbo, magma, inferno,
    viridis, plasma, jet. Returns uint8 ``[H, W, 3]`` RGB.
    """
    import cv2

    if cmap not in _COLORMAPS:
        raise InputError(f"unknown colormap '{cmap}'; choose from {', '.join(_COLORMAPS)}")
    d = np.asarray(inverse_depth, dtype=np.float64)
    if d.ndim != 2:
        raise InputError(f"inverse_depth must be [H, W], got shape {list(d.shape)}")
    finite = np.isfinite(d)
    lo, hi = np.percentile(d[finite], percentiles) if finite.any() else (0.0, 1.0)
    scaled = np.clip((np.where(finite, d, lo) - lo) / max(hi - lo, 1e-12), 0, 1)
    gray = np.round(scaled * 255).astype(np.uint8)
    code = getattr(cv2, f"COLORMAP_{cmap.upper()}")
    out = cv2.cvtColor(cv2.applyColorMap(gray, code), cv2.COLOR_BGR2RGB)
    out[~finite] = 0
    return out


def side_by_side(panels: Sequence[np.ndarray], labels: Sequence[str] | None = None,
                 gap: int = 4, background: int = 255) -> np.ndarray:
    """Concatenate panels left to right, padding shorter ones at the bottom.

    Args:
        panels: uint8 images ``[H_i, W_i, 3]`` or grayscale ``[H_i, W_i]``.
        labels: optional captions, one per panel, drawn in a strip above each panel.
        gap: pixels of ``background`` between panels.
    Returns:
        uint8 ``[max H (+ label strip), sum W + gaps, 3]``.
    """
    if not panels:
        raise InputError("side_by_side needs at least one panel")
    if labels is not None and len(labels) != len(panels):
        raise InputError(f"got {len(labels)} labels for {len(panels)} panels")
    panels = [_rgb(p, f"panel {i}") for i, p in enumerate(panels)]
    strip = 18 if labels else 0
    h = max(p.shape[0] for p in panels) + strip
    w = sum(p.shape[1] for p in panels) + gap * (len(panels) - 1)
    out = np.full((h, w, 3), background, np.uint8)
    x = 0
    for i, p in enumerate(panels):
        out[strip:strip + p.shape[0], x:x + p.shape[1]] = p
        if labels:
            out[:strip, x:x + p.shape[1]] = _label(str(labels[i]), p.shape[1], strip, background)
        x += p.shape[1] + gap
    return out


def _label(text: str, width: int, height: int, background: int) -> np.ndarray:
    """A ``[height, width, 3]`` caption strip: the text shrunk to fit the panel's width (down to a
    legible minimum), then cut with ".." so that it never spills into the next panel."""
    import cv2

    font, scale, pad = cv2.FONT_HERSHEY_SIMPLEX, 0.4, 2
    text_w = cv2.getTextSize(text, font, scale, 1)[0][0]
    if text_w > width - 2 * pad:
        scale = max(0.28, scale * (width - 2 * pad) / text_w)
    while len(text) > 1 and cv2.getTextSize(text, font, scale, 1)[0][0] > width - 2 * pad:
        text = text[:-3] + ".." if len(text) > 3 else text[:-1]
    strip = np.full((height, width, 3), background, np.uint8)
    cv2.putText(strip, text, (pad, height - 5), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return strip


def patch_box(index: int, grid: tuple[int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Pixel box ``(x0, y0, x1, y1)`` (inclusive) of model patch ``index`` in an image of ``size = (H, W)``."""
    gh, gw = grid
    i, j = divmod(int(index), gw)
    h, w = size
    return (int(j * w / gw), int(i * h / gh), int(np.ceil((j + 1) * w / gw)) - 1,
            int(np.ceil((i + 1) * h / gh)) - 1)


def draw_patches(image: np.ndarray, indices: Iterable[int], grid: tuple[int, int],
                 color: tuple[int, int, int] = (255, 255, 0)) -> np.ndarray:
    """Outline model patches ``indices`` (last-frame ``i*w + j`` on ``grid``) on a copy of ``image``."""
    import cv2

    out = np.ascontiguousarray(image).copy()
    for idx in indices:
        x0, y0, x1, y1 = patch_box(idx, grid, out.shape[:2])
        cv2.rectangle(out, (x0, y0), (x1, y1), color, 1)
    return out


def points_overlay(image: np.ndarray, points: np.ndarray,
                   colors: np.ndarray | Sequence[int] | None = None, radius: int = 4) -> np.ndarray:
    """Draw filled circles with a black rim at ``points`` (``[N, 2]`` ``(x, y)`` pixels).

    ``colors``: one RGB colour for all, or ``[N, 3]``; default :func:`distinct_colors`.
    """
    import cv2

    out = _rgb(image, "image").copy()
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if colors is None:
        colors = distinct_colors(len(pts))
    colors = np.broadcast_to(np.asarray(colors, dtype=np.int64).reshape(-1, 3), (len(pts), 3))
    for (x, y), c in zip(pts, colors):
        if np.isfinite(x) and np.isfinite(y):
            center = (int(round(x)), int(round(y)))
            cv2.circle(out, center, radius + 1, (0, 0, 0), -1, cv2.LINE_AA)
            cv2.circle(out, center, radius, tuple(int(v) for v in c), -1, cv2.LINE_AA)
    return out


def draw_moves(image: np.ndarray, moves: Sequence, static: Sequence = ()) -> np.ndarray:
    """Red arrows for ``moves`` ``((x, y), (dx, dy))`` and green dots for ``static`` points
    ``(x, y)`` (pixels), drawn on a copy of ``image``: a counterfactual's poke."""
    import cv2

    out = _rgb(image, "image").copy()
    for (x, y), (dx, dy) in moves:
        cv2.arrowedLine(out, (round(x), round(y)), (round(x + dx), round(y + dy)), (255, 0, 0), 1,
                        cv2.LINE_AA, tipLength=0.3)
    if len(static):
        out = points_overlay(out, np.asarray(static, np.float64), colors=(0, 255, 0), radius=2)
    return out


def pixel_change(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """``|after - before|`` per pixel, averaged over RGB: float32 ``[H, W]`` in 0..255."""
    return np.abs(after.astype(np.float32) - before.astype(np.float32)).mean(axis=2)


def change_map(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """:func:`pixel_change` colour-mapped (turbo, stretched to its own range): uint8 ``[H, W, 3]``."""
    return depth_to_color(pixel_change(before, after), percentiles=(0.0, 100.0))


def _rgb(image: np.ndarray, name: str) -> np.ndarray:
    """uint8 ``[H, W, 3]`` from uint8 RGB or grayscale ``[H, W]``; anything else is an error."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise InputError(f"{name} must be uint8, got {a.dtype}")
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] != 3:
        raise InputError(f"{name} must be [H, W, 3] RGB, got shape {list(a.shape)}")
    return np.ascontiguousarray(a)


def _same_size(image: np.ndarray, other: np.ndarray, name: str) -> None:
    if other.shape[:2] != image.shape[:2]:
        raise InputError(f"{name} is {other.shape[1]}x{other.shape[0]} but the image is "
                         f"{image.shape[1]}x{image.shape[0]}")
