"""Spelke segments: what moves together when you poke it (docs/design.md §4).

A single image is a static two-frame movie (frame 1 = frame 0). A *poke* at point p moves the
patch under p by d in frame 1 (its frame-0 content placed at p + d, revealed) while a few far
background patches are revealed unchanged (held static); the model predicts the rest of frame 1.
Our own flow probe (:mod:`probes.flow`, no external flow network) then measures the
counterfactual flow from frame 0 to that prediction, and the affinity of q to p is
``dot(flow(q), d) / |d|^2`` (1: q followed the poke fully, 0: it stayed), averaged over several
directions, magnitudes and anchor seeds, normalised and thresholded (Otsu by default).

How the flow is read (``read``):

- ``"counterfactual"`` (default): the Jacobian flow probe runs on the counterfactual input
  itself, under the poke's own mask (moved patch and anchors revealed). Its primal *is* the
  counterfactual prediction, so there is no separate forward, one mask instead of two, and the
  model reading the flow sees exactly how the poked patch moved. Cost per poke: one JVP item per
  flow tangent (4 at 64 px with patch 8 and a half-patch poke).
- ``"reprobe"``: predict the counterfactual (one forward), then run :func:`probes.flow.flow` on
  (frame 0, prediction) with its random masks (:data:`DEFAULT_FLOW_OPTIONS`). The model re-reads
  the prediction through random revealed patches, which for objects about a patch wide rarely
  fall wholly on the moved object. On the rigid-objects oracle of the 20-scene quick suite at
  64 px (benchmarks/segment_speed.py --accuracy) it scored mean IoU 0.28 against 0.49 for
  ``"counterfactual"`` with patch 8 (0.64 against 0.68 with patch 4), at twice the flow-probe
  cost plus the forwards.

Pokes of different lengths are read with their own flow window (``max_flow = ceil(1.5 |d|)``),
since the window sets how many sources share a tangent.

``method="jacobian"`` is the talk's definition, the derivative of the flow at q with respect to
the counterfactual motion at p: one forward-mode JVP of the prediction with respect to d (two
tangents, d_x and d_y), turned into flow derivatives by linearised brightness constancy (the
Lucas-Kanade normal equations over a small window). It costs one JVP per point and seed instead
of a flow probe per poke, but needs texture: in a uniform region the flow derivative is not
observable and the affinity falls to 0. On the rigid-objects oracle it beats the poke protocol in
accuracy as well as cost (benchmarks/segment_speed.py --accuracy).

Automatic mode (``points=None``) first scans a grid of candidate points with one cheap poke each
(by default the Jacobian one), scores how *movable* each is (how far its poke spread beyond the
poked patch), then segments the most movable candidate that no segment explains yet, and repeats
until the segments cover ``coverage`` of the movable candidates.

Limits: a poke moves a whole patch, so objects much smaller than a patch cannot be poked alone;
the poke protocol's boundaries are as sharp as the flow probe's ``stride`` (``flow={"stride": 2}``
sharpens them at 4x the cost); a two-part object whose far part catches an anchor follows
the poke only partly (its affinity halves, which normalising mostly absorbs).

Example (numpy uint8 image, ``(x, y)`` pixel points; masks come back at the input's size)::

    import cwm, cwm.io
    predictor = cwm.load("default")
    result = predictor.segment(cwm.io.read_image("still.png"), points=[(50, 85), (20, 50)])
    masks, scores = result.masks, result.scores  # bool [2, H, W] at the image's size, float32 [2]
    result.save("segments.png")                  # overlay; ".npz" saves the arrays
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cwm.errors import InputError
from cwm.frames import check_points, resize, scale_points, to_tensor
from probes.affinity import PokeMaps, compute_maps, point_affinity
from probes.cost import CountingPredictor
from probes.pokes import Poke, make_poke, shift_image, source_box
from probes.results import SegmentResult
from probes.segment_config import DEFAULT_FLOW_OPTIONS, MAX_TRIES_PER_SEGMENT, SegmentConfig, resolve_config

__all__ = ["DEFAULT_FLOW_OPTIONS", "MAX_TRIES_PER_SEGMENT", "SegmentConfig", "SegmentResult", "otsu_threshold",
           "segment", "shift_image"]


def segment(predictor, image, points: Sequence[tuple[float, float]] | None = None,
            config: SegmentConfig | None = None, maps: PokeMaps | None = None, **overrides: Any) -> SegmentResult:
    """Spelke segments of ``image``: one per point, or all objects when ``points`` is None.

    Args:
        predictor: a :class:`cwm.predictor.CWMPredictor` or any object with its probe attributes.
        image: numpy uint8 ``[H, W, 3]`` RGB or torch ``[3, H, W]`` in [0, 1] (one image).
        points: ``(x, y)`` pixels of the input; None for automatic mode.
        config: a :class:`SegmentConfig`; ``**overrides`` replace its fields by name.
        maps: a :class:`probes.affinity.PokeMaps` of this image and predictor, which keeps every
            poke's map for the next call (:meth:`probes.pair.PairState.segment`); ``cost`` then
            counts only the pokes this call computed.
    Raises:
        InputError: an image smaller than 2x2, a batch, an empty point list or a point outside.
        ConfigError: an unknown or bad setting.
    """
    cfg = resolve_config(config, overrides)
    f0, batch = to_tensor(image, "image", min_size=2)
    f0 = f0.detach()  # the probe differentiates with respect to its own pokes, never the caller's graph
    if f0.shape[0] != 1:
        raise InputError(f"segment takes one image, not a batch of {f0.shape[0]}")
    size = batch.size
    if points is not None:
        if len(points) == 0:
            raise InputError("points: the list is empty; pass at least one (x, y) point, "
                             "or points=None to find all objects")
        user_points = check_points(points, size, "points")
    counted = CountingPredictor(predictor)
    f0m = resize(f0, predictor.size).to(predictor.device)  # (1, 3, H, W) at model size
    if points is None:
        model_points, affinity = _automatic(counted, f0m, cfg, maps)
        user_points = scale_points(model_points, predictor.size, size).reshape(-1, 2)
    else:
        model_points = scale_points(user_points, size, predictor.size)
        affinity, _ = point_affinity(counted, f0m, model_points, cfg, maps)
    norm = np.stack([_normalise(a) for a in affinity]) if len(affinity) else affinity
    thresholds = np.array([_threshold(a, cfg.threshold) for a in norm], np.float32)
    up = _upsample(norm, size)
    masks = up >= thresholds[:, None, None]
    raw = _upsample(affinity, size)
    scores = np.array([float(r[m].mean()) if m.any() else 0.0 for r, m in zip(raw, masks)], np.float32)
    rgb = (f0[0].permute(1, 2, 0).clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    return SegmentResult(masks=masks, scores=scores, points=np.asarray(user_points, np.float32).reshape(-1, 2),
                         affinity=up.astype(np.float32), thresholds=thresholds, cost=counted.cost(),
                         image=rgb)


# ---------------------------------------------------------------------------------------------
# Automatic mode


def _automatic(predictor, f0: torch.Tensor, cfg: SegmentConfig, maps: PokeMaps | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Model-pixel points ``[N, 2]`` and raw affinities ``[N, H, W]`` of the objects found."""
    p, (gh, gw) = predictor.patch_size, predictor.grid
    stride = max(1, cfg.candidate_stride)
    cands = np.array([((j + 0.5) * p - 0.5, (i + 0.5) * p - 0.5)
                      for i in range(stride // 2, gh, stride) for j in range(stride // 2, gw, stride)])
    scan_cfg = dataclasses.replace(cfg, method=cfg.scan, magnitudes=(max(cfg.magnitudes),), directions=1, seeds=1)
    pokes, scan = _scan(predictor, f0, cands, scan_cfg, maps)  # (C, H, W)
    movability = np.array([_movability(predictor, a, source_box(predictor, pk)) for a, pk in zip(scan, pokes)])
    movable = np.flatnonzero(movability >= cfg.min_movability)
    pixels = np.round(cands[:, ::-1]).astype(int)  # (row, col) of each candidate
    explained = np.zeros(predictor.size, bool)
    found_points, found_maps, kept, tries = [], [], [], 0
    for c in movable[np.argsort(-movability[movable], kind="stable")]:
        done = explained[tuple(pixels[movable].T)].mean() >= cfg.coverage
        if done or len(kept) >= cfg.max_segments or tries >= MAX_TRIES_PER_SEGMENT * cfg.max_segments:
            break
        if explained[tuple(pixels[c])]:
            continue
        tries += 1
        (raw,), (box,) = point_affinity(predictor, f0, cands[c:c + 1], cfg, maps)
        norm = _normalise(raw)
        mask = norm >= _threshold(norm, cfg.threshold)
        explained[tuple(pixels[c])] = True  # tried
        # Keep it if more than the poked patch moved and it moved along: a background held by
        # the anchors follows a poke only partly. Too large a segment is the background moved.
        beyond = mask.copy()
        beyond[box[0]:box[1], box[2]:box[3]] = False
        follows = beyond.any() and raw[beyond].mean() >= cfg.min_follow
        if mask.mean() > cfg.max_area:
            explained |= mask
        elif follows and mask.mean() >= cfg.min_area and all(_overlap(mask, k) <= cfg.dedup for k in kept):
            explained |= mask
            kept.append(mask)
            found_points.append(cands[c])
            found_maps.append(raw)
    h, w = predictor.size
    return (np.array(found_points, np.float64).reshape(-1, 2),
            np.array(found_maps, np.float32).reshape(-1, h, w))


def _scan(predictor, f0: torch.Tensor, cands: np.ndarray, cfg: SegmentConfig, maps: PokeMaps | None = None
          ) -> tuple[list[Poke], np.ndarray]:
    """One poke per candidate, the direction turning by 90 degrees from one to the next:
    the pokes and their raw affinities ``[C, H, W]``."""
    length = max(1.0, cfg.magnitudes[0] * predictor.patch_size)
    pokes = []
    for c, pt in enumerate(cands):
        theta = 0.5 * math.pi * c
        d = (0, 0) if cfg.method == "jacobian" else (round(length * math.cos(theta)),
                                                     round(length * math.sin(theta)))
        pokes.append(make_poke(predictor, pt, d, (cfg.seed, c, 0), cfg))
    return pokes, (compute_maps if maps is None else maps)(predictor, f0, pokes, cfg)


def _movability(predictor, a: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """How far a poke spread: the mean of the ``2 p^2`` largest affinities outside the poked
    patch's ``box`` (two patches' worth of pixels, so small objects and thin parts count)."""
    y0, y1, x0, x1 = box
    outside = a.copy()
    outside[y0:y1, x0:x1] = -np.inf
    top = np.partition(outside.ravel(), -2 * predictor.patch_size ** 2)[-2 * predictor.patch_size ** 2:]
    return float(np.mean(top[np.isfinite(top)])) if np.isfinite(top).any() else 0.0


# ---------------------------------------------------------------------------------------------
# Normalising and thresholding


def _normalise(a: np.ndarray) -> np.ndarray:
    """Affinity scaled to [0, 1] by its robust maximum (after a 3x3 median, which ignores spikes)."""
    from scipy.ndimage import median_filter

    top = float(median_filter(a, size=3, mode="nearest").max())
    return np.clip(a / max(top, 1e-6), 0.0, 1.0).astype(np.float32)


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of values in [0, 1]: the cut maximising the between-class variance.

    Returns 0.5 for a constant input (nothing to separate).
    """
    v = np.asarray(values, np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0 or np.ptp(v) < 1e-9:
        return 0.5
    hist, edges = np.histogram(v, bins=bins, range=(0.0, 1.0))
    centres = 0.5 * (edges[:-1] + edges[1:])
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mean0 = m0 / np.maximum(w0, 1)
    mean1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mean0 - mean1) ** 2
    return float(edges[int(np.argmax(between)) + 1])


def _threshold(a: np.ndarray, threshold: str | float) -> float:
    return otsu_threshold(a) if threshold == "otsu" else float(threshold)


def _upsample(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``[N, h, w]`` -> ``[N, H, W]`` bilinear (pixel centres aligned)."""
    if len(maps) == 0:
        return np.zeros((0, *size), np.float32)
    t = torch.from_numpy(np.ascontiguousarray(maps, np.float32))[:, None]
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)[:, 0].numpy()


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over the smaller of two masks (1: one holds the other)."""
    smaller = min(a.sum(), b.sum())
    return float(np.sum(a & b) / smaller) if smaller else 0.0
