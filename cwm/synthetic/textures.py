"""Procedural textures (fractal colour noise with spots) and the renderer's bilinear sampler."""
from __future__ import annotations

import numpy as np

from cwm.synthetic.config import Size

# Amplitude of each noise octave, finest (4 px) to coarsest (128 px): luminance, then colour.
_OCTAVE_CELLS = (4, 8, 16, 32, 64, 128)
_LUMA_AMPS = (0.03, 0.07, 0.10, 0.12, 0.12, 0.10)
_CHROMA_AMPS = (0.0, 0.04, 0.05, 0.06, 0.07, 0.07)


def _fractal_colour(rng: np.random.Generator, size: Size, base: np.ndarray,
                    luma_dir: np.ndarray) -> np.ndarray:
    """Multi-octave smooth colour noise around ``base``: ``[h, w, 3]`` float32.

    Built coarse to fine on 4 channels (luminance, then 3 colour channels): upsample the running
    sum 2x (bicubic) and add the next octave's random grid, so each octave is a random grid of
    spacing ``cell`` px. The channels are mixed to RGB (luminance along ``luma_dir``) on the
    coarse grid, before the last 4x upsampling, which is linear and so commutes with the mix.
    """
    import cv2

    height, width = size
    levels = [i for i, cell in enumerate(_OCTAVE_CELLS) if cell <= max(size)]
    amps = np.stack([_LUMA_AMPS, _CHROMA_AMPS, _CHROMA_AMPS, _CHROMA_AMPS], 1).astype(np.float32)
    # Small textures skip the coarse octaves; scale the rest up to keep the overall contrast.
    amps *= np.sqrt(np.sum(amps ** 2, axis=0) / np.sum(amps[levels] ** 2, axis=0))
    coarsest = _OCTAVE_CELLS[levels[-1]]
    rows, cols = -(-height // coarsest) + 2, -(-width // coarsest) + 2
    grid = rng.standard_normal((rows, cols, 4), np.float32) * amps[levels[-1]]
    for level in reversed(levels[:-1]):
        grid = cv2.resize(grid, (cols * 2, rows * 2), interpolation=cv2.INTER_CUBIC)
        cell = _OCTAVE_CELLS[level]                 # keep only the cells that cover the image
        rows, cols = -(-height // cell) + 2, -(-width // cell) + 2
        grid = grid[:rows, :cols] + rng.standard_normal((rows, cols, 4), np.float32) * amps[level]
    mix = np.concatenate([luma_dir[None], np.eye(3, dtype=np.float32)])     # [4, 3]
    rgb = grid.reshape(-1, 4) @ mix + base
    finest = _OCTAVE_CELLS[levels[0]]
    up = cv2.resize(rgb.reshape(rows, cols, 3), (cols * finest, rows * finest),
                    interpolation=cv2.INTER_CUBIC)
    oy = int(rng.integers(0, up.shape[0] - height + 1))
    ox = int(rng.integers(0, up.shape[1] - width + 1))
    return np.ascontiguousarray(up[oy:oy + height, ox:ox + width])


def procedural_texture(rng: np.random.Generator, size: Size) -> np.ndarray:
    """Multi-scale coloured texture ``[h, w, 3]`` float32 in [0, 1].

    Luminance and colour noise octaves (4 to 128 px), an optional grating and a few soft spots.
    The finest detail is about 4 px wide so that bilinear resampling stays accurate: the ground
    truth test warps frames with bilinear sampling.
    """
    import cv2

    height, width = size
    longest = max(size)
    base = rng.uniform(0.25, 0.75, 3).astype(np.float32)
    luma_dir = (0.7 + 0.6 * rng.random(3)).astype(np.float32)
    tex = _fractal_colour(rng, size, base, luma_dir)
    if rng.random() < 0.5:                                 # a grating, 10 to 24 px period
        angle, period, phase = rng.uniform(0, np.pi), rng.uniform(10, 24), rng.uniform(0, 6.3)
        k = 2 * np.pi / period
        ax = k * np.cos(angle) * np.arange(width, dtype=np.float32)
        ay = k * np.sin(angle) * np.arange(height, dtype=np.float32) + phase
        # sin(ax + ay) as a sum of two outer products: cheaper than a full-grid sin.
        wave = np.outer(np.cos(ay), np.sin(ax)) + np.outer(np.sin(ay), np.cos(ax))
        tex += wave[..., None] * rng.uniform(-0.07, 0.07, 3).astype(np.float32)
    # Soft spots that shift the colour of a region, keeping its texture (colour distractors).
    shift = np.zeros_like(tex)
    for _ in range(int(rng.integers(1, 5))):
        centre = (int(rng.integers(width)), int(rng.integers(height)))
        axes = tuple(int(a) for a in rng.integers(2, max(3, longest // 6), 2))
        colour = tuple(float(c) for c in rng.uniform(-0.45, 0.45, 3))
        cv2.ellipse(shift, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
    spot_edge_sigma = 2.0
    tex += cv2.GaussianBlur(shift, (0, 0), spot_edge_sigma)
    blur_sigma = 0.8                                       # keeps details resampling-friendly
    tex = cv2.GaussianBlur(tex, (0, 0), blur_sigma)
    # A smooth squash into (0.02, 0.98) instead of clipping: kinks would spoil bilinear resampling.
    return (0.5 + 0.48 * np.tanh((tex - 0.5) / 0.48)).astype(np.float32)


def sample_bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``image [h, w, 3]`` float32 at positions ``(x, y)`` (equal shapes).

    Positions outside the image are clamped (edge replication). Returns ``[*x.shape, 3]``
    float32. cv2.remap rounds positions to 1/32 px, so a sample sits within 1/64 px of the
    analytic position: that is the renderer's only departure from the exact ground truth.
    """
    import cv2

    return cv2.remap(image, x.astype(np.float32), y.astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)
