"""Affinity of every model pixel to a poked point: the counterfactual flow of each poke read by
the flow probe (``method="poke"``), or the flow derivative with respect to the poke by one JVP
and the Lucas-Kanade normal equations (``method="jacobian"``); see :mod:`probes.segments`."""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from cwm.model import math_attention
from probes.core import ProbeOptions
from probes.flow import flow as flow_probe
from probes.flow import window_flow
from probes.jacobian import auto_chunk_size
from probes.packing import pack_grid
from probes.pokes import Poke, displacements, make_poke, poke_inputs, source_box
from probes.segment_config import DEFAULT_FLOW_OPTIONS, FLOW_READ_MODE, SegmentConfig


class PokeMaps:
    """The affinity maps of one image's pokes, each computed once and kept (a :class:`probes.pair.
    PairState` holds one, so segments asked again or one more point at a time cost only new pokes).

    ``maps(predictor, f0, pokes, cfg)`` is ``poke_maps`` or ``jacobian_maps`` (by ``cfg.method``)
    of ``pokes``, ``[N, H, W]`` at model size, computing only the pokes not met before under the
    same read-out settings (``method``, ``read``, ``flow``, ``jacobian_window``). Maps depend on
    the image: use one instance per image ``f0`` and predictor.
    """

    def __init__(self) -> None:
        self._maps: dict[tuple, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._maps)

    def __call__(self, predictor, f0: torch.Tensor, pokes: Sequence[Poke], cfg: SegmentConfig) -> np.ndarray:
        setting = (cfg.method, cfg.read, tuple(sorted((k, repr(v)) for k, v in cfg.flow.items())),
                   cfg.jacobian_window)
        new = [pk for pk in dict.fromkeys(pokes) if (setting, pk) not in self._maps]
        if new:
            self._maps.update(zip([(setting, pk) for pk in new], compute_maps(predictor, f0, new, cfg)))
        h, w = predictor.size
        return np.stack([self._maps[setting, pk] for pk in pokes]) if pokes else np.zeros((0, h, w))


def compute_maps(predictor, f0: torch.Tensor, pokes: Sequence[Poke], cfg: SegmentConfig) -> np.ndarray:
    """``[N, H, W]`` affinity maps of ``pokes`` by ``cfg.method`` (:func:`poke_maps` or :func:`jacobian_maps`)."""
    return (poke_maps if cfg.method == "poke" else jacobian_maps)(predictor, f0, pokes, cfg)


def point_affinity(predictor, f0: torch.Tensor, points: np.ndarray, cfg: SegmentConfig,
                   maps: PokeMaps | None = None) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """Raw affinity ``[P, H, W]`` float32 of each model pixel to each model-pixel point ``[P, 2]``,
    and the box ``(y0, y1, x0, x1)`` of each point's poked patch, which is set to 1 (it moved by
    construction). Batched over all points and pokes (see ``SegmentConfig.chunk_size``). A point's
    anchors are seeded by its place in ``points``; ``maps`` keeps poke maps across calls."""
    pokes = [[make_poke(predictor, pt, d, seed_key=(cfg.seed, i, s), cfg=cfg)
              for s, d in displacements(predictor.patch_size, cfg, base=cfg.method == "jacobian")]
             for i, pt in enumerate(points)]
    flat = [pk for per_point in pokes for pk in per_point]
    maps = (compute_maps if maps is None else maps)(predictor, f0, flat, cfg)
    out, boxes, k = [], [], 0
    for per_point in pokes:
        a = maps[k:k + len(per_point)].mean(0)
        k += len(per_point)
        y0, y1, x0, x1 = box = source_box(predictor, per_point[0])
        a[y0:y1, x0:x1] = 1.0
        out.append(a)
        boxes.append(box)
    return np.stack(out).astype(np.float32), boxes


def poke_maps(predictor, f0: torch.Tensor, pokes: Sequence[Poke], cfg: SegmentConfig) -> np.ndarray:
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


def chunk_size(predictor, cfg: SegmentConfig) -> int:
    """Predictor items per batched call (``cfg.chunk_size``, or the engine's automatic size)."""
    return cfg.chunk_size or auto_chunk_size(predictor)


def _flow_tangents(predictor, opts) -> int:
    """Tangents one flow read takes per frame pair and mask (the packs of its source grid)."""
    stride = opts.stride or predictor.patch_size
    return pack_grid((predictor.size[0] // stride, predictor.size[1] // stride), stride, opts.max_flow).num_packs


def _read_counterfactual(predictor, f0: torch.Tensor, pokes: Sequence[Poke], max_flow: int,
                         cfg: SegmentConfig):
    """Flow ``[H, W, 2]`` and occlusion ``[H, W]`` of frame 0 into each poke's own prediction:
    the Jacobian probe run on the counterfactual input itself (its moved patch and anchors
    revealed, one mask), so the prediction it reads is exactly the counterfactual one.

    Each call holds as many pokes as leave room for all their tangents, so that the engine
    computes each poke's primal once and batches its tangents (vmap)."""
    chunk = chunk_size(predictor, cfg)
    opts = ProbeOptions.from_kwargs({"max_flow": max_flow, "chunk_size": chunk, "mode": FLOW_READ_MODE, **cfg.flow,
                                     "num_masks": 1})
    stride = opts.stride or predictor.patch_size
    per_call = max(1, chunk // _flow_tangents(predictor, opts))
    for start in range(0, len(pokes), per_call):  # every counterfactual, batched
        group = pokes[start:start + per_call]
        d = torch.tensor([pk.d for pk in group], dtype=f0.dtype, device=f0.device)
        with torch.no_grad():
            clips, masks = poke_inputs(predictor, f0, group, d)
        flow, _, occluded = window_flow(predictor, clips[:, :, 0], clips[:, :, -1], stride, opts.max_flow, opts,
                                        masks=masks)
        yield from zip(flow.float().cpu().numpy(), occluded.cpu().numpy())


def _read_reprobe(predictor, f0: torch.Tensor, pokes: Sequence[Poke], max_flow: int, cfg: SegmentConfig):
    """Flow ``[H, W, 2]`` and occlusion ``[H, W]`` from frame 0 to each poke's prediction, by
    predicting the counterfactual (one forward each) and running :func:`probes.flow.flow` on the
    pair with random masks over :data:`DEFAULT_FLOW_OPTIONS`."""
    chunk = chunk_size(predictor, cfg)
    options = {**DEFAULT_FLOW_OPTIONS, "max_flow": max_flow, "chunk_size": chunk, **cfg.flow}
    preds = []
    for start in range(0, len(pokes), chunk):  # every counterfactual, batched
        group = pokes[start:start + chunk]
        d = torch.tensor([pk.d for pk in group], dtype=f0.dtype, device=f0.device)
        with torch.no_grad():
            preds.append(predictor.predict_fn(*poke_inputs(predictor, f0, group, d)).float().clamp(0, 1))
    preds = torch.cat(preds)
    # Batched flow probes, frame 0 against each prediction; each pair costs num_masks x tangents items.
    opts = ProbeOptions.from_kwargs(options)
    per_call = max(1, chunk // (opts.num_masks * _flow_tangents(predictor, opts)))
    for start in range(0, len(pokes), per_call):
        group = preds[start:start + per_call]
        for res in flow_probe(predictor, f0.expand(len(group), -1, -1, -1), group, **options):
            yield res.flow, res.occlusion


def jacobian_maps(predictor, f0: torch.Tensor, pokes: Sequence[Poke], cfg: SegmentConfig) -> np.ndarray:
    """Flow derivative with respect to the poke, ``trace(d flow(q) / d d) / 2`` per poke: ``[N, H, W]``.

    ``J_u = d pred / d d_u`` (a JVP) is explained as an image motion ``M``: ``J_u = -grad(pred) . M[:, u]``,
    solved by least squares over a window (Lucas-Kanade normal equations, ridge-regularised).
    The two tangents (``d_x``, ``d_y``) of each poke are batched by ``vmap``, sharing its primal.
    """
    maps, step = [], max(1, chunk_size(predictor, cfg) // 2)  # two tangents per poke
    for start in range(0, len(pokes), step):
        chunk = pokes[start:start + step]
        d0 = torch.tensor([pk.d for pk in chunk], dtype=f0.dtype, device=f0.device)  # (n, 2)
        tangents = torch.eye(2, dtype=f0.dtype, device=f0.device)[:, None].expand(-1, len(chunk), -1)  # (2, n, 2)

        def predict(d: torch.Tensor, pokes=chunk) -> torch.Tensor:
            return predictor.predict_fn(*poke_inputs(predictor, f0, pokes, d))

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
