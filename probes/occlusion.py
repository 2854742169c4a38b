"""Occlusion from counterfactual responses (docs/design.md §4).

A frame-0 point that stays visible reappears in the predicted frame 1, so a bump there gets a
strong response; an occluded point (covered, or gone out of frame) gets almost none. The score
of a source is its response strength (``|response|`` summed around the peak, which for a warp is
the fraction of the point that stays visible) over the *typical* strength of the same frame pair
(the median over its sources, which assumes most of the frame stays visible), and the source is
occluded when its score is below a threshold, or when its flow leaves the frame. Two alternatives are offered:

- reverse mode: the summed ``|J^T u|`` of all cotangents is the coverage of frame 0, how much
  predicted content each frame-0 pixel supplies; the same threshold applies to it, over its median;
- forward-backward consistency of the forward (JVP) and backward (VJP) flows, the classical
  check (:func:`cwm.baselines.forward_backward_occlusion`), combined with the response test.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from cwm.errors import ConfigError

#: Occluded when the response strength is below this fraction of the typical (median) strength.
#: Chosen on the full synthetic suite (100 scenes) with each scene's exact oracle, searching its
#: whole motion range (benchmarks/flow_tune.py): pooled occlusion F1 over thresholds 0.1..0.9
#: peaks at 0.5, with per-pixel sources (F1 0.93) and with one source per patch (F1 0.76: thin
#: occlusion bands fall between sources).
DEFAULT_OCCLUSION_THRESHOLD = 0.5
_TINY = 1e-12


def check_threshold(value: float, name: str = "occlusion_threshold") -> float:
    """A threshold in (0, 1]; anything else raises ConfigError."""
    value = float(value)
    if not 0.0 < value <= 1.0:
        raise ConfigError(f"{name} must be in (0, 1] (got {value})")
    return value


def normalised_scores(strength: torch.Tensor) -> torch.Tensor:
    """Response strengths ``[N, B]`` over the median of each pair: about 1 visible, 0 occluded."""
    typical = strength.median(dim=0, keepdim=True).values.clamp(min=_TINY)
    return strength / typical


def consistency_occlusion(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """Forward-backward check of flows ``[H, W, 2]``: True where ``f(x) + b(x + f(x))`` is large
    or ``x + f(x)`` leaves the frame (thresholds of :mod:`cwm.baselines`)."""
    from cwm.baselines import forward_backward_occlusion

    return forward_backward_occlusion(np.asarray(forward, np.float32), np.asarray(backward, np.float32))


def occlusion_method(predictor, **options) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``(frame0, frame1) -> occlusion [H, W] bool`` of :func:`probes.flow.flow` with ``options``,
    in the form :func:`cwm.evaluation.run_occlusion_suite` expects."""
    from probes.flow import flow

    def method(frame0: np.ndarray, frame1: np.ndarray) -> np.ndarray:
        return flow(predictor, frame0, frame1, **options).occlusion

    return method
