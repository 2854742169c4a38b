"""Rendering a scene description into frames with exact flow, occlusion, instances and depth."""
from __future__ import annotations

import numpy as np

from cwm.errors import ConfigError
from cwm.synthetic.config import Size, check_size
from cwm.synthetic.scene import Layer, Scene, SceneSpec
from cwm.synthetic.textures import sample_bilinear


def _window(layer: Layer, m: np.ndarray, size: Size) -> tuple[slice, slice]:
    """Rows and columns of frame pixels that the layer can cover under layer-to-frame map ``m``."""
    height, width = size
    if layer.shape is None:
        return slice(0, height), slice(0, width)
    reach = layer.shape.radius * np.sqrt(np.sum(m[:2, :2] ** 2)) + 1.0   # Frobenius >= spectral
    x0, x1 = max(int(m[0, 2] - reach), 0), min(int(m[0, 2] + reach) + 2, width)
    y0, y1 = max(int(m[1, 2] - reach), 0), min(int(m[1, 2] + reach) + 2, height)
    return slice(y0, max(y0, y1)), slice(x0, max(x0, x1))


def _apply(m: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points ``(xs, ys)`` mapped by the 3x3 affine ``m``."""
    return m[0, 0] * xs + m[0, 1] * ys + m[0, 2], m[1, 0] * xs + m[1, 1] * ys + m[1, 2]


def _render_frame(spec: SceneSpec, inverses: list[np.ndarray], t: int, xs: np.ndarray,
                  ys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Colour ``[H, W, 3]`` float32 in [0, 1], layer index ``[H, W]`` int16, inverse depth."""
    height, width = spec.size
    image = np.zeros((height, width, 3), np.float32)
    index = np.zeros((height, width), np.int16)
    inv_depth = np.zeros((height, width), np.float64)
    for li, layer in enumerate(spec.layers):
        rows, cols = _window(layer, layer.motion[t], spec.size)
        if rows.start == rows.stop or cols.start == cols.stop:
            continue
        u, v = _apply(inverses[li][t], xs[rows, cols], ys[rows, cols])
        ox, oy = layer.texture_origin
        colour = sample_bilinear(layer.texture, u - ox, v - oy)
        a, b, c = layer.inverse_depth
        if layer.shape is None:
            image[rows, cols], index[rows, cols] = colour, li
            inv_depth[rows, cols] = a * u + b * v + c
            continue
        # Signed distance in frame pixels: layer units times the layer's scale at frame t.
        dist = layer.shape.sdf(u, v) * np.sqrt(abs(np.linalg.det(layer.motion[t, :2, :2])))
        alpha = np.clip(0.5 - dist, 0.0, 1.0).astype(np.float32)[..., None]
        region = image[rows, cols]
        region += alpha * (colour - region)
        hard = dist <= 0
        index[rows, cols][hard] = li
        inv_depth[rows, cols][hard] = c
    return image, index, inv_depth


def _flow_and_occlusion(spec: SceneSpec, inverses: list[np.ndarray], t: int, index: np.ndarray,
                        xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, ...]:
    """Exact forward flow ``[H, W, 2]`` float32, occlusion and out-of-frame ``[H, W]`` bool."""
    height, width = spec.size
    flow = np.zeros((height, width, 2), np.float64)
    occluded = np.zeros((height, width), bool)
    for li, layer in enumerate(spec.layers):
        sel = index == li
        if not sel.any():
            continue
        x, y = xs[sel], ys[sel]
        px, py = _apply(layer.motion[t + 1] @ inverses[li][t], x, y)
        flow[sel, 0], flow[sel, 1] = px - x, py - y
        covered = np.zeros(x.shape, bool)
        for lj in range(li + 1, len(spec.layers)):
            nearer = spec.layers[lj]
            rows, cols = _window(nearer, nearer.motion[t + 1], spec.size)
            near = ((px >= cols.start - 1) & (px <= cols.stop) & (py >= rows.start - 1)
                    & (py <= rows.stop))
            if near.any():
                u, v = _apply(inverses[lj][t + 1], px[near], py[near])
                covered[near] |= nearer.shape.sdf(u, v) <= 0
        occluded[sel] = covered
    half = 0.5  # pixel (i, j) covers [j - 0.5, j + 0.5) x [i - 0.5, i + 0.5)
    end_x, end_y = xs + flow[..., 0], ys + flow[..., 1]
    outside = (end_x < -half) | (end_x >= width - half) | (end_y < -half) | (end_y >= height - half)
    return flow.astype(np.float32), occluded | outside, outside


def render(spec: SceneSpec, rng: np.random.Generator | None = None) -> Scene:
    """Render a SceneSpec into frames and ground truth. ``rng`` draws the pixel noise, if any."""
    height, width = check_size(spec.size)
    num_frames = spec.layers[0].motion.shape[0] if spec.layers else 0
    for i, layer in enumerate(spec.layers):
        if (layer.shape is None) != (i == 0) or layer.motion.shape != (num_frames, 3, 3):
            raise ConfigError(f"SceneSpec layer {i}: the background (and only it) must have no "
                              f"shape, and every motion must be [T, 3, 3]; got {layer.motion.shape}")
    if num_frames < 2:
        raise ConfigError(f"SceneSpec needs a background layer and T >= 2 frames, got {num_frames}")
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    inverses = [np.linalg.inv(layer.motion) for layer in spec.layers]
    images, indices, inv_depths = zip(*(_render_frame(spec, inverses, t, xs, ys)
                                        for t in range(num_frames)))
    flows, occlusions, outsides = zip(*(_flow_and_occlusion(spec, inverses, t, indices[t], xs, ys)
                                        for t in range(num_frames - 1)))
    ids = np.array([layer.instance_id for layer in spec.layers], np.int32)
    pixels = np.stack(images) * 255.0
    if spec.noise > 0:
        rng = rng if rng is not None else np.random.default_rng(0)
        pixels += rng.normal(0.0, spec.noise * 255.0, pixels.shape).astype(np.float32)
    frames = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    return Scene(frames=frames, flow=np.stack(flows), occlusion=np.stack(occlusions),
                 out_of_frame=np.stack(outsides), instances=ids[np.stack(indices)],
                 depth=(1.0 / np.stack(inv_depths)).astype(np.float32), spec=spec)
