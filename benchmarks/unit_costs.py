"""The yardstick of the speed benchmarks: seconds of the predictor's unit items on one random clip.

:func:`item_seconds` times a batch-1 forward, a forward item of a batch of :data:`BATCH`, a JVP item
of :data:`BATCH` tangents batched by ``vmap`` (sharing one primal, as the probes' engine does) and,
on request, one reverse pass; each is the best of ``repeats`` runs after one warm-up run.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import torch

from cwm.masking import make_mask
from cwm.model import math_attention

#: Items per batched call timed.
BATCH = 8


def best_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Least wall time of ``repeats`` calls of ``fn`` after one untimed call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def item_seconds(predictor, masked: float, repeats: int, reverse: bool = False) -> dict[str, float]:
    """``forward_s`` (batch 1), ``forward_batched_per_item_s``, ``jvp_per_item_s`` and, with
    ``reverse``, ``reverse_pass_s``: seconds on a random ``[1, 3, T, H, W]`` clip at
    ``predictor.size`` with ``masked`` of the last frame's patches masked (seed 0)."""
    t, (h, w) = predictor.num_frames, predictor.size
    clip = torch.rand(1, 3, t, h, w)
    mask = make_mask(1, t, predictor.grid, masked, seed=0)

    def predict(v: torch.Tensor) -> torch.Tensor:
        return predictor.predict_fn(v, mask.expand(v.shape[0], -1))

    out = {}
    with torch.no_grad():
        out["forward_s"] = best_seconds(lambda: predict(clip), repeats)
        many = clip.expand(BATCH, -1, -1, -1, -1).contiguous()
        out["forward_batched_per_item_s"] = best_seconds(lambda: predict(many), repeats) / BATCH
    tangents = torch.randn(BATCH, *clip.shape)
    with math_attention():
        jvp = torch.func.vmap(lambda tangent: torch.func.jvp(predict, (clip,), (tangent,))[1])
        out["jvp_per_item_s"] = best_seconds(lambda: jvp(tangents), repeats) / BATCH
        if reverse:
            leaf = clip.clone().requires_grad_(True)
            pred = predict(leaf)
            cotangent = torch.randn_like(pred)
            out["reverse_pass_s"] = best_seconds(
                lambda: torch.autograd.grad(pred, leaf, cotangent, retain_graph=True), repeats)
    return out
