"""Occlusion scores of counterfactual responses: the threshold, the per-pair normalised
strength and the forward-backward check (the concept is described in :mod:`probes.occlusion`).

The low end of the probe package: :mod:`probes.core` and :mod:`probes.flow` import it, and
:mod:`probes.occlusion` (which calls the flow probe) re-exports it, so imports run one way.
"""
from __future__ import annotations

import numpy as np
import torch

from cwm.baselines import forward_backward_occlusion
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
    return forward_backward_occlusion(np.asarray(forward, np.float32), np.asarray(backward, np.float32))
