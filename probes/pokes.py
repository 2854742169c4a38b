"""Counterfactual pokes of :mod:`probes.segments`: which patch moves where, which far patches
are held static as anchors, and the clip and mask that show the model the poke (the patch's
frame-0 content moved by ``d`` with :func:`shift_image`, revealed in frame 1)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from cwm.frames import shift_image
from cwm.masking import last_frame_mask, patch_at
from probes.segment_config import SegmentConfig


@dataclass(frozen=True)
class Poke:
    """One counterfactual, in model pixels: move the patch under ``point`` by ``d``."""

    point: tuple[float, float]
    d: tuple[int, int]
    target: int            # last-frame patch index revealed with the moved content
    anchors: tuple[int, ...]


def displacements(patch: int, cfg: SegmentConfig, base: bool) -> list[tuple[int, tuple[int, int]]]:
    """``(seed, (dx, dy))`` of every poke of one point. The Jacobian variant differentiates at
    rest (d = 0) once per seed; the directions and magnitudes are the tangents' business."""
    if base:
        return [(s, (0, 0)) for s in range(cfg.seeds)]
    out = []
    for s in range(cfg.seeds):
        for m in cfg.magnitudes:
            for i in range(cfg.directions):
                theta = 2 * math.pi * (i + s / cfg.seeds) / cfg.directions
                length = max(1.0, m * patch)
                out.append((s, (round(length * math.cos(theta)), round(length * math.sin(theta)))))
    return out


def make_poke(predictor, point, d, seed_key, cfg: SegmentConfig) -> Poke:
    h, w = predictor.size
    x, y = float(point[0]), float(point[1])
    if not (0 <= x + d[0] <= w - 1 and 0 <= y + d[1] <= h - 1):
        d = (-d[0], -d[1])  # near the border, poke the other way rather than off the image
    tx, ty = np.clip(x + d[0], 0, w - 1), np.clip(y + d[1], 0, h - 1)
    d = (round(tx - x), round(ty - y))
    target = patch_of(predictor, x + d[0], y + d[1])
    source = patch_of(predictor, x, y)
    gh, gw = predictor.grid
    centres = (np.stack(np.meshgrid(np.arange(gw), np.arange(gh)), -1).reshape(-1, 2) + 0.5) * predictor.patch_size
    dist = np.minimum(np.hypot(*(centres - (x, y)).T), np.hypot(*(centres - (x + d[0], y + d[1])).T))
    dist[[source, target]] = -1.0  # never hold the poked patch or its target
    count = min(cfg.anchors, gh * gw - 2)
    far = np.flatnonzero(dist >= cfg.anchor_distance * math.hypot(h, w))
    if len(far) < count:
        far = np.argsort(-dist, kind="stable")[:count]
    # A random far patch, then each next one as far as possible from those chosen: spread-out
    # anchors rarely all land on one object (which would leave the background free to move).
    anchors = [int(np.random.default_rng(list(seed_key)).choice(far))] if count else []
    while len(anchors) < count:
        gap = np.min([np.hypot(*(centres[far] - centres[a]).T) for a in anchors], axis=0)
        anchors.append(int(far[np.argmax(gap)]))
    return Poke((x, y), d, target, tuple(sorted(anchors)))


def patch_of(predictor, x: float, y: float) -> int:
    return patch_at(x, y, predictor.patch_size, predictor.grid)


def patch_box(predictor, idx: int) -> tuple[int, int, int, int]:
    p, gw = predictor.patch_size, predictor.grid[1]
    i, j = divmod(idx, gw)
    return i * p, (i + 1) * p, j * p, (j + 1) * p


def source_box(predictor, poke: Poke) -> tuple[int, int, int, int]:
    """Frame-0 pixels whose content the poke reveals at the target patch."""
    y0, y1, x0, x1 = patch_box(predictor, poke.target)
    h, w = predictor.size
    dx, dy = poke.d
    return max(0, y0 - dy), min(h, y1 - dy), max(0, x0 - dx), min(w, x1 - dx)


def poke_inputs(predictor, f0: torch.Tensor, pokes: Sequence[Poke],
                d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Counterfactual clips ``[N, 3, T, H, W]`` and masks ``[N, T*h*w]`` for pokes by ``d [N, 2]``."""
    n = len(pokes)
    box = torch.zeros(n, 1, *predictor.size, dtype=f0.dtype, device=f0.device)
    last = torch.ones(n, predictor.grid[0] * predictor.grid[1], dtype=torch.bool)
    for k, pk in enumerate(pokes):
        y0, y1, x0, x1 = patch_box(predictor, pk.target)
        box[k, :, y0:y1, x0:x1] = 1.0
        last[k, [pk.target, *pk.anchors]] = False
    frame0 = f0.expand(n, -1, -1, -1)
    frame1 = frame0 * (1 - box) + shift_image(frame0, d) * box
    frames = [frame0] * (predictor.num_frames - 1) + [frame1]
    return torch.stack(frames, dim=2), last_frame_mask(last, predictor.num_frames).to(f0.device)
