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

import contextlib
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cwm.errors import ConfigError, InputError, did_you_mean
from cwm.frames import check_points, resize, scale_points, to_tensor
from cwm.masking import last_frame_mask
from cwm.model import math_attention
from probes.core import ProbeOptions
from probes.flow import flow as flow_probe
from probes.flow import window_flow
from probes.jacobian import auto_chunk_size
from probes.packing import pack_grid

#: Automatic mode tries at most this many candidates per segment it may keep.
MAX_TRIES_PER_SEGMENT = 3
#: Flow-probe options of ``read="reprobe"`` (overridden by ``SegmentConfig.flow``). The prediction
#: being measured is our own synthetic frame, so revealing a quarter of it costs nothing in
#: fairness and can show the model how the poked object moved.
DEFAULT_FLOW_OPTIONS = {"visible": 0.25, "num_masks": 2}


@dataclass(frozen=True)
class SegmentConfig:
    """Settings of :func:`segment`. Lengths are in model pixels unless said otherwise.

    Attributes:
        method: ``"poke"`` (counterfactual flow of finite pokes) or ``"jacobian"`` (flow
            derivative with respect to the poke, by JVP).
        read: poke protocol: how the counterfactual flow is read, ``"counterfactual"`` (the flow
            probe under each poke's own mask) or ``"reprobe"`` (predict, then the flow probe with
            random masks); see the module docstring.
        directions: poke directions per magnitude, evenly spaced on the circle.
        magnitudes: poke lengths in patch sides (rounded to whole pixels, at least 1).
        seeds: repetitions with other anchors and a rotated set of directions.
        anchors: background patches held static in every poke.
        anchor_distance: anchors are at least this fraction of the image diagonal away from
            the poked patch and its target (the farthest patches if too few are).
        threshold: ``"otsu"`` or a fixed value in (0, 1) on the normalised affinity.
        flow: keyword arguments of :func:`probes.flow.flow` for the poke protocol's flow read
            (``stride``, ``max_flow``, ``sigma``, ``mode``, ...; ``max_flow`` defaults to 1.5x each
            poke's length). With ``read="reprobe"`` they go over :data:`DEFAULT_FLOW_OPTIONS`;
            ``read="counterfactual"`` uses each poke's own mask, so ``num_masks``, ``visible``
            and ``seed`` are refused there.
        jacobian_window: side of the brightness-constancy window (pixels, odd).
        seed: base seed of anchor choice.
        chunk_size: most predictor items (counterfactuals x tangents) per batched call; None:
            :func:`probes.jacobian.auto_chunk_size` (from the model's token count: 50 for
            tiny_64, 12 for small_128; forward mode on a CPU slows down per item in larger
            batches, measured 3x at 32 items for small_128).
        scan: automatic mode: how candidates are scored, ``"jacobian"`` (2 JVPs each) or
            ``"poke"`` (one poke and its flow read each, 8 times the cost at the defaults).
        candidate_stride: automatic mode: candidate points every this many patches.
        min_movability: automatic mode: candidates less movable than this are not segmented.
        coverage: automatic mode: stop once the segments tried cover this fraction of the movable
            candidates (1: try until every movable candidate is inside some segment).
        max_segments: automatic mode: at most this many segments.
        min_area, max_area: automatic mode: segments outside this fraction of the image are
            dropped (the upper bound drops the background, which a poke can move as a whole).
        dedup: automatic mode: a segment sharing more than this fraction of the smaller of
            itself and a kept segment is dropped (a duplicate or a fragment).
        min_follow: automatic mode: a segment whose pixels beyond the poked patch followed the
            poke by less than this on average is dropped (a background held by ``a`` anchors
            follows by about ``1 / (1 + a)``).
    """

    method: str = "poke"
    read: str = "counterfactual"
    directions: int = 4
    magnitudes: tuple[float, ...] = (0.5, 1.0)
    seeds: int = 1
    anchors: int = 4
    anchor_distance: float = 0.3
    threshold: str | float = "otsu"
    flow: dict = field(default_factory=dict)
    jacobian_window: int = 3
    seed: int = 0
    chunk_size: int | None = None
    scan: str = "jacobian"
    candidate_stride: int = 1
    min_movability: float = 0.5
    coverage: float = 1.0
    max_segments: int = 8
    min_area: float = 0.002
    max_area: float = 0.5
    dedup: float = 0.5
    min_follow: float = 0.4

    def __post_init__(self) -> None:
        if self.read not in ("counterfactual", "reprobe"):
            raise ConfigError(f"read must be 'counterfactual' or 'reprobe' (got {self.read!r})")
        masking = sorted(set(self.flow) & {"num_masks", "visible", "seed"})
        if self.read == "counterfactual" and masking:
            raise ConfigError(f"flow options {masking} choose random masks, which read='counterfactual' does "
                              "not use (it reads each poke under its own mask); use read='reprobe'")
        for name in ("method", "scan"):
            if getattr(self, name) not in ("poke", "jacobian"):
                raise ConfigError(f"{name} must be 'poke' or 'jacobian' (got {getattr(self, name)!r})")
        if self.directions < 1 or self.seeds < 1 or self.anchors < 0 or not self.magnitudes:
            raise ConfigError("directions and seeds must be >= 1, anchors >= 0, magnitudes non-empty")
        if any(m <= 0 for m in self.magnitudes):
            raise ConfigError(f"magnitudes must be positive (got {self.magnitudes})")
        if self.threshold != "otsu" and not (isinstance(self.threshold, (int, float))
                                             and 0 < self.threshold < 1):
            raise ConfigError(f"threshold must be 'otsu' or a number in (0, 1) (got {self.threshold!r})")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ConfigError(f"chunk_size must be >= 1 or None (got {self.chunk_size})")
        if self.jacobian_window < 1 or self.jacobian_window % 2 == 0:
            raise ConfigError(f"jacobian_window must be odd and positive (got {self.jacobian_window})")


@dataclass
class SegmentResult:
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

    masks: np.ndarray
    scores: np.ndarray
    points: np.ndarray
    affinity: np.ndarray
    thresholds: np.ndarray
    cost: dict[str, int]
    image: np.ndarray = field(repr=False)

    def numpy(self) -> np.ndarray:
        """The masks, ``[N, H, W]`` bool."""
        return self.masks

    def visualize(self) -> np.ndarray:
        """The image with each mask tinted in its own colour and the points drawn: uint8 ``[H, W, 3]``."""
        from cwm import viz

        out = viz.overlay_segments(self.image, self.masks) if len(self.masks) else self.image.copy()
        return viz.points_overlay(out, self.points, radius=max(2, min(self.image.shape[:2]) // 64))

    def save(self, path: str | Path, overwrite: bool = False) -> None:
        """Write the overlay (``.png``, ``.jpg``, ...) or the arrays (``.npz``)."""
        path = Path(path)
        if path.suffix.lower() == ".npz":
            from cwm.atomic import atomic_write

            with atomic_write(path, overwrite=overwrite) as tmp, open(tmp, "wb") as fh:
                np.savez_compressed(fh, masks=self.masks, scores=self.scores, points=self.points,
                                    affinity=self.affinity, thresholds=self.thresholds)
            return
        from cwm.io import write_image

        write_image(path, self.visualize(), overwrite=overwrite)


@dataclass(frozen=True)
class _Poke:
    """One counterfactual, in model pixels: move the patch under ``point`` by ``d``."""

    point: tuple[float, float]
    d: tuple[int, int]
    target: int            # last-frame patch index revealed with the moved content
    anchors: tuple[int, ...]


def segment(predictor, image, points: Sequence[tuple[float, float]] | None = None,
            config: SegmentConfig | None = None, **overrides: Any) -> SegmentResult:
    """Spelke segments of ``image``: one per point, or all objects when ``points`` is None.

    Args:
        predictor: a :class:`cwm.predictor.CWMPredictor` or any object with its probe attributes.
        image: numpy uint8 ``[H, W, 3]`` RGB or torch ``[3, H, W]`` in [0, 1] (one image).
        points: ``(x, y)`` pixels of the input; None for automatic mode.
        config: a :class:`SegmentConfig`; ``**overrides`` replace its fields by name.
    Raises:
        InputError: an image smaller than 2x2, a batch, an empty point list or a point outside.
        ConfigError: an unknown or bad setting.
    """
    cfg = _resolve(config, overrides)
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
    counted = _Counted(predictor)
    f0m = resize(f0, predictor.size).to(predictor.device)  # (1, 3, H, W) at model size
    if points is None:
        model_points, affinity = _automatic(counted, f0m, cfg)
        user_points = scale_points(model_points, predictor.size, size).reshape(-1, 2)
    else:
        model_points = scale_points(user_points, size, predictor.size)
        affinity, _ = _point_affinity(counted, f0m, model_points, cfg)
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


def _resolve(config: SegmentConfig | None, overrides: dict[str, Any]) -> SegmentConfig:
    cfg = config or SegmentConfig()
    names = {f.name for f in dataclasses.fields(SegmentConfig)}
    for key in overrides:
        if key not in names:
            raise ConfigError(f"segment: unknown option {key!r}"
                              + (did_you_mean(key, names) or f"; options are {sorted(names)}"))
    if "magnitudes" in overrides:
        overrides["magnitudes"] = tuple(np.atleast_1d(overrides["magnitudes"]).tolist())
    return dataclasses.replace(cfg, **overrides) if overrides else cfg


# ---------------------------------------------------------------------------------------------
# Affinity of every pixel to a poked point (model resolution)


def _point_affinity(predictor, f0: torch.Tensor, points: np.ndarray, cfg: SegmentConfig
                    ) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """Raw affinity ``[P, H, W]`` float32 of each model pixel to each model-pixel point ``[P, 2]``,
    and the box ``(y0, y1, x0, x1)`` of each point's poked patch, which is set to 1 (it moved by
    construction). Batched over all points and pokes (see ``SegmentConfig.chunk_size``)."""
    pokes = [[_make_poke(predictor, pt, d, seed_key=(cfg.seed, i, s), cfg=cfg)
              for s, d in _displacements(predictor.patch_size, cfg, base=cfg.method == "jacobian")]
             for i, pt in enumerate(points)]
    flat = [pk for per_point in pokes for pk in per_point]
    maps = (_poke_maps if cfg.method == "poke" else _jacobian_maps)(predictor, f0, flat, cfg)
    out, boxes, k = [], [], 0
    for per_point in pokes:
        a = maps[k:k + len(per_point)].mean(0)
        k += len(per_point)
        y0, y1, x0, x1 = box = _source_box(predictor, per_point[0])
        a[y0:y1, x0:x1] = 1.0
        out.append(a)
        boxes.append(box)
    return np.stack(out).astype(np.float32), boxes


def _displacements(patch: int, cfg: SegmentConfig, base: bool) -> list[tuple[int, tuple[int, int]]]:
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


def _make_poke(predictor, point, d, seed_key, cfg: SegmentConfig) -> _Poke:
    h, w = predictor.size
    x, y = float(point[0]), float(point[1])
    if not (0 <= x + d[0] <= w - 1 and 0 <= y + d[1] <= h - 1):
        d = (-d[0], -d[1])  # near the border, poke the other way rather than off the image
    tx, ty = np.clip(x + d[0], 0, w - 1), np.clip(y + d[1], 0, h - 1)
    d = (round(tx - x), round(ty - y))
    target = _patch_of(predictor, x + d[0], y + d[1])
    source = _patch_of(predictor, x, y)
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
    return _Poke((x, y), d, target, tuple(sorted(anchors)))


def _patch_of(predictor, x: float, y: float) -> int:
    p, (gh, gw) = predictor.patch_size, predictor.grid
    return int(np.clip(y // p, 0, gh - 1)) * gw + int(np.clip(x // p, 0, gw - 1))


def _box(predictor, idx: int) -> tuple[int, int, int, int]:
    p, gw = predictor.patch_size, predictor.grid[1]
    i, j = divmod(idx, gw)
    return i * p, (i + 1) * p, j * p, (j + 1) * p


def _source_box(predictor, poke: _Poke) -> tuple[int, int, int, int]:
    """Frame-0 pixels whose content the poke reveals at the target patch."""
    y0, y1, x0, x1 = _box(predictor, poke.target)
    h, w = predictor.size
    dx, dy = poke.d
    return max(0, y0 - dy), min(h, y1 - dy), max(0, x0 - dx), min(w, x1 - dx)


def _inputs(predictor, f0: torch.Tensor, pokes: Sequence[_Poke], d: torch.Tensor):
    """Counterfactual clips ``[N, 3, T, H, W]`` and masks ``[N, T*h*w]`` for pokes by ``d [N, 2]``."""
    n = len(pokes)
    box = torch.zeros(n, 1, *predictor.size, dtype=f0.dtype, device=f0.device)
    last = torch.ones(n, predictor.grid[0] * predictor.grid[1], dtype=torch.bool)
    for k, pk in enumerate(pokes):
        y0, y1, x0, x1 = _box(predictor, pk.target)
        box[k, :, y0:y1, x0:x1] = 1.0
        last[k, [pk.target, *pk.anchors]] = False
    frame0 = f0.expand(n, -1, -1, -1)
    frame1 = frame0 * (1 - box) + shift_image(frame0, d) * box
    frames = [frame0] * (predictor.num_frames - 1) + [frame1]
    return torch.stack(frames, dim=2), last_frame_mask(last, predictor.num_frames).to(f0.device)


def _poke_maps(predictor, f0: torch.Tensor, pokes: Sequence[_Poke], cfg: SegmentConfig) -> np.ndarray:
    """``dot(flow, d) / |d|^2`` per poke: ``[N, H, W]`` at model size.

    Pokes are grouped by length, each group read with ``max_flow = ceil(1.5 |d|)``: the flow
    window sets how many sources share a tangent, so a short poke need not pay for a long one.
    """
    maps: list[np.ndarray | None] = [None] * len(pokes)
    groups: dict[int, list[int]] = {}
    for k, pk in enumerate(pokes):
        groups.setdefault(math.ceil(1.5 * math.hypot(*pk.d)), []).append(k)
    read = _read_counterfactual if cfg.read == "counterfactual" else _read_reprobe
    for max_flow, members in groups.items():
        group = [pokes[k] for k in members]
        for k, pk, (flow, occluded) in zip(members, group, read(predictor, f0, group, max_flow, cfg)):
            dd = np.asarray(pk.d, np.float64)
            # A pixel the moved object covers did not move with it (its filled-in flow would say so).
            maps[k] = np.where(occluded, 0.0, flow.astype(np.float64) @ dd / max(dd @ dd, 1e-12))
    return np.stack(maps)


def _chunk_size(predictor, cfg: SegmentConfig) -> int:
    """Predictor items per batched call (``cfg.chunk_size``, or the engine's automatic size)."""
    return cfg.chunk_size or auto_chunk_size(predictor)


def _flow_tangents(predictor, opts) -> int:
    """Tangents one flow read takes per frame pair and mask (the packs of its source grid)."""
    stride = opts.stride or predictor.patch_size
    return pack_grid((predictor.size[0] // stride, predictor.size[1] // stride), stride, opts.max_flow).num_packs


def _read_counterfactual(predictor, f0: torch.Tensor, pokes: Sequence[_Poke], max_flow: int,
                         cfg: SegmentConfig):
    """Flow ``[H, W, 2]`` and occlusion ``[H, W]`` of frame 0 into each poke's own prediction:
    the Jacobian probe run on the counterfactual input itself (its moved patch and anchors
    revealed, one mask), so the prediction it reads is exactly the counterfactual one.

    Each call holds as many pokes as leave room for all their tangents, so that the engine
    computes each poke's primal once and batches its tangents (vmap)."""
    chunk = _chunk_size(predictor, cfg)
    opts = ProbeOptions.from_kwargs({"max_flow": max_flow, "chunk_size": chunk, **cfg.flow, "num_masks": 1})
    stride = opts.stride or predictor.patch_size
    per_call = max(1, chunk // _flow_tangents(predictor, opts))
    for start in range(0, len(pokes), per_call):  # every counterfactual, batched
        group = pokes[start:start + per_call]
        d = torch.tensor([pk.d for pk in group], dtype=f0.dtype, device=f0.device)
        with torch.no_grad():
            clips, masks = _inputs(predictor, f0, group, d)
        flow, _, occluded = window_flow(predictor, clips[:, :, 0], clips[:, :, -1], stride, opts.max_flow, opts,
                                        masks=masks)
        yield from zip(flow.float().cpu().numpy(), occluded.cpu().numpy())


def _read_reprobe(predictor, f0: torch.Tensor, pokes: Sequence[_Poke], max_flow: int, cfg: SegmentConfig):
    """Flow ``[H, W, 2]`` and occlusion ``[H, W]`` from frame 0 to each poke's prediction, by
    predicting the counterfactual (one forward each) and running :func:`probes.flow.flow` on the
    pair with random masks over :data:`DEFAULT_FLOW_OPTIONS`."""
    chunk = _chunk_size(predictor, cfg)
    options = {**DEFAULT_FLOW_OPTIONS, "max_flow": max_flow, "chunk_size": chunk, **cfg.flow}
    preds = []
    for start in range(0, len(pokes), chunk):  # every counterfactual, batched
        group = pokes[start:start + chunk]
        d = torch.tensor([pk.d for pk in group], dtype=f0.dtype, device=f0.device)
        with torch.no_grad():
            preds.append(predictor.predict_fn(*_inputs(predictor, f0, group, d)).float().clamp(0, 1))
    preds = torch.cat(preds)
    # Batched flow probes, frame 0 against each prediction; each pair costs num_masks x tangents items.
    opts = ProbeOptions.from_kwargs(options)
    per_call = max(1, chunk // (opts.num_masks * _flow_tangents(predictor, opts)))
    for start in range(0, len(pokes), per_call):
        group = preds[start:start + per_call]
        for res in flow_probe(predictor, f0.expand(len(group), -1, -1, -1), group, **options):
            yield res.flow, res.occlusion


def _jacobian_maps(predictor, f0: torch.Tensor, pokes: Sequence[_Poke], cfg: SegmentConfig) -> np.ndarray:
    """Flow derivative with respect to the poke, ``trace(d flow(q) / d d) / 2`` per poke: ``[N, H, W]``.

    ``J_u = d pred / d d_u`` (a JVP) is explained as an image motion ``M``: ``J_u = -grad(pred) . M[:, u]``,
    solved by least squares over a window (Lucas-Kanade normal equations, ridge-regularised).
    The two tangents (``d_x``, ``d_y``) of each poke are batched by ``vmap``, sharing its primal.
    """
    maps, step = [], max(1, _chunk_size(predictor, cfg) // 2)  # two tangents per poke
    for start in range(0, len(pokes), step):
        chunk = pokes[start:start + step]
        d0 = torch.tensor([pk.d for pk in chunk], dtype=f0.dtype, device=f0.device)  # (n, 2)
        tangents = torch.eye(2, dtype=f0.dtype, device=f0.device)[:, None].expand(-1, len(chunk), -1)  # (2, n, 2)

        def predict(d: torch.Tensor, pokes=chunk) -> torch.Tensor:
            return predictor.predict_fn(*_inputs(predictor, f0, pokes, d))

        # Forward mode needs no reverse-mode graph of the model's parameters.
        with torch.no_grad(), math_attention():
            pred, jac = torch.func.vmap(lambda t, f=predict, d0=d0: torch.func.jvp(f, (d0,), (t,)))(tangents)
        maps.append(_flow_derivative(pred[0].detach().float(), jac[0].detach().float(), jac[1].detach().float(),
                                     cfg.jacobian_window))
    return np.concatenate(maps)


def _flow_derivative(pred: torch.Tensor, jx: torch.Tensor, jy: torch.Tensor, window: int) -> np.ndarray:
    """``trace(M) / 2`` where ``J_u ~ -grad(pred) . M[:, u]`` over a ``window``: ``[N, H, W]``."""
    gy, gx = torch.gradient(pred, dim=(2, 3))
    gx, gy = -gx, -gy  # the image change of a motion d is -grad . d

    def box(t: torch.Tensor) -> torch.Tensor:  # sum over channels, mean over the window
        return F.avg_pool2d(t.sum(1, keepdim=True), window, 1, window // 2, count_include_pad=False)[:, 0]

    a11, a12, a22 = box(gx * gx), box(gx * gy), box(gy * gy)
    b11, b12, b21, b22 = box(gx * jx), box(gx * jy), box(gy * jx), box(gy * jy)
    ridge = 1e-2 * (a11 + a22).mean(dim=(1, 2), keepdim=True) + 1e-12
    a11, a22 = a11 + ridge, a22 + ridge
    det = a11 * a22 - a12 * a12
    # M = A^-1 B; only its diagonal is needed.
    m11 = (a22 * b11 - a12 * b21) / det
    m22 = (a11 * b22 - a12 * b12) / det
    return (0.5 * (m11 + m22)).cpu().numpy()


# ---------------------------------------------------------------------------------------------
# Automatic mode


def _automatic(predictor, f0: torch.Tensor, cfg: SegmentConfig) -> tuple[np.ndarray, np.ndarray]:
    """Model-pixel points ``[N, 2]`` and raw affinities ``[N, H, W]`` of the objects found."""
    p, (gh, gw) = predictor.patch_size, predictor.grid
    stride = max(1, cfg.candidate_stride)
    cands = np.array([((j + 0.5) * p - 0.5, (i + 0.5) * p - 0.5)
                      for i in range(stride // 2, gh, stride) for j in range(stride // 2, gw, stride)])
    scan_cfg = dataclasses.replace(cfg, method=cfg.scan, magnitudes=(max(cfg.magnitudes),), directions=1, seeds=1)
    pokes, scan = _scan(predictor, f0, cands, scan_cfg)  # (C, H, W)
    movability = np.array([_movability(predictor, a, _source_box(predictor, pk)) for a, pk in zip(scan, pokes)])
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
        (raw,), (box,) = _point_affinity(predictor, f0, cands[c:c + 1], cfg)
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


def _scan(predictor, f0: torch.Tensor, cands: np.ndarray, cfg: SegmentConfig) -> tuple[list[_Poke], np.ndarray]:
    """One poke per candidate, the direction turning by 90 degrees from one to the next:
    the pokes and their raw affinities ``[C, H, W]``."""
    length = max(1.0, cfg.magnitudes[0] * predictor.patch_size)
    pokes = []
    for c, pt in enumerate(cands):
        theta = 0.5 * math.pi * c
        d = (0, 0) if cfg.method == "jacobian" else (round(length * math.cos(theta)),
                                                     round(length * math.sin(theta)))
        pokes.append(_make_poke(predictor, pt, d, (cfg.seed, c, 0), cfg))
    maps = (_poke_maps if cfg.method == "poke" else _jacobian_maps)(predictor, f0, pokes, cfg)
    return pokes, maps


def _movability(predictor, a: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """How far a poke spread: the mean of the ``2 p^2`` largest affinities outside the poked
    patch's ``box`` (two patches' worth of pixels, so small objects and thin parts count)."""
    y0, y1, x0, x1 = box
    outside = a.copy()
    outside[y0:y1, x0:x1] = -np.inf
    top = np.partition(outside.ravel(), -2 * predictor.patch_size ** 2)[-2 * predictor.patch_size ** 2:]
    return float(np.mean(top[np.isfinite(top)])) if np.isfinite(top).any() else 0.0


# ---------------------------------------------------------------------------------------------
# Images, normalising and thresholding


def shift_image(img: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """``img [B, C, H, W]`` moved by ``d [B, 2]`` = ``(dx, dy)`` pixels: ``out(x) = img(x - d)``.

    Separable Catmull-Rom (cubic convolution) interpolation, border-replicated, as two banded
    matrix products, so that it is differentiable in ``img`` and ``d`` in forward mode too. At
    whole-pixel shifts its derivative in ``d`` is minus the central-difference gradient of the
    shifted image, the gradient the probes read motion with (bilinear would be one-sided).
    """
    rows = _shift_matrix(d[:, 1], img.shape[2], img.dtype)  # (B, H, H)
    cols = _shift_matrix(d[:, 0], img.shape[3], img.dtype)  # (B, W, W)
    return rows[:, None] @ img @ cols[:, None].transpose(-1, -2)


def _shift_matrix(shift: torch.Tensor, n: int, dtype: torch.dtype) -> torch.Tensor:
    """``[B, n, n]``: row i holds the Catmull-Rom weights of the source pixels of output ``i``."""
    pos = torch.arange(n, dtype=dtype, device=shift.device)[None] - shift.to(dtype)[:, None]  # (B, n)
    base = pos.detach().floor()
    t = pos - base
    weights = torch.stack([(-t ** 3 + 2 * t ** 2 - t) / 2, (3 * t ** 3 - 5 * t ** 2 + 2) / 2,
                           (-3 * t ** 3 + 4 * t ** 2 + t) / 2, (t ** 3 - t ** 2) / 2], -1)  # (B, n, 4)
    idx = (base.long()[..., None] + torch.arange(-1, 3, device=shift.device)).clamp(0, n - 1)
    return torch.zeros(*pos.shape, n, dtype=dtype, device=shift.device).scatter_add(2, idx, weights)


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


# ---------------------------------------------------------------------------------------------
# Cost accounting


class _Counted:
    """A predictor proxy that counts the items it predicts, by kind: plain forward, JVP, VJP."""

    def __init__(self, predictor):
        self._predictor = predictor
        self._counts = {"forwards": 0, "jvps": 0, "vjps": 0}

    def __getattr__(self, name: str):
        return getattr(self._predictor, name)

    def predict_fn(self, video: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        kind, items = _kind_and_items(video)
        self._counts[kind] += items
        return self._predictor.predict_fn(video, mask)

    def cost(self) -> dict[str, int]:
        return dict(self._counts)


def _kind_and_items(video: torch.Tensor) -> tuple[str, int]:
    """What a predictor call computes and for how many items: ("jvps", n) under forward-mode AD
    (counting tangents that ``vmap`` batches), ("vjps", n) when building a graph, else
    ("forwards", n)."""
    import torch.autograd.forward_ad as fwad
    from torch._C import _functorch as ft

    items = int(video.shape[0])
    tangent = None
    with contextlib.suppress(RuntimeError, AttributeError):
        tangent = fwad.unpack_dual(video).tangent
    if tangent is None:
        grad = video.requires_grad and torch.is_grad_enabled()
        return ("vjps" if grad else "forwards"), items
    while ft.is_functorch_wrapped_tensor(tangent):  # tangents batched by vmap hide their count
        inner = ft.get_unwrapped(tangent)
        if ft.is_batchedtensor(tangent):
            items *= int(inner.shape[ft.maybe_get_bdim(tangent)])
        tangent = inner
    return "jvps", items
