"""Predictor work a probe spends, counted by kind (plain forwards, forward-mode JVP items, forwards
that build a reverse-mode graph). :func:`call_kind` is the one place that reads torch's private
functorch API (to count the tangents ``vmap`` batches); without it, it falls back to the batch size."""
from __future__ import annotations

import contextlib

import torch
import torch.autograd.forward_ad as fwad


class CountingPredictor:
    """A predictor proxy that counts the items it predicts, by kind: plain forward, JVP, VJP."""

    def __init__(self, predictor):
        self._predictor = predictor
        self._counts = {"forwards": 0, "jvps": 0, "vjps": 0}

    def __getattr__(self, name: str):
        return getattr(self._predictor, name)

    def predict_fn(self, video: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        kind, items = call_kind(video)
        self._counts[kind] += items
        return self._predictor.predict_fn(video, mask)

    def cost(self) -> dict[str, int]:
        return dict(self._counts)


def call_kind(video: torch.Tensor) -> tuple[str, int]:
    """What a predictor call computes and for how many items: ("jvps", n) under forward-mode AD
    (counting tangents that ``vmap`` batches), ("vjps", n) when building a graph, else
    ("forwards", n)."""
    items = int(video.shape[0])
    tangent = None
    with contextlib.suppress(RuntimeError, AttributeError):
        tangent = fwad.unpack_dual(video).tangent
    if tangent is None:
        grad = video.requires_grad and torch.is_grad_enabled()
        return ("vjps" if grad else "forwards"), items
    return "jvps", items * vmapped_count(tangent)


def vmapped_count(tensor: torch.Tensor) -> int:
    """How many items ``torch.func.vmap`` levels batch inside ``tensor`` (1 outside vmap).

    The only use of torch's private functorch API in the library: vmap hides its batch
    dimensions from the tensor's shape. Where that API is missing or changed, this returns 1
    (the cost then counts each vmapped call once, an undercount, never an error).
    """
    try:
        from torch._C import _functorch as ft

        count = 1
        while ft.is_functorch_wrapped_tensor(tensor):
            inner = ft.get_unwrapped(tensor)
            if ft.is_batchedtensor(tensor):
                count *= int(inner.shape[ft.maybe_get_bdim(tensor)])
            tensor = inner
        return count
    except (ImportError, AttributeError, RuntimeError, TypeError):
        return 1
