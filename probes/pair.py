"""One frame pair's probe work, computed once and read many ways (the predictor's front door).

>>> state = predictor.set_pair(frame0, frame1)     # nothing runs yet
>>> state.flow().flow, state.occlusion()           # one flow probe ...
>>> state.depth(), state.depth(stereo=True)        # ... that every read-out below reuses

The flow probe (:func:`probes.flow.flow`, multi-scale and verified by default) runs at the first
read and is kept; occlusion is its occlusion map and depth reads the parallax of the same flow
(:func:`probes.depth.depth_from_flow`), so ``state.depth()`` equals ``predictor.depth(frame0,
frame1)`` with the same flow options at no further model cost.
"""
from __future__ import annotations

import numpy as np

from probes import flow as flow_module
from probes.depth import DepthResult, check_depth_pair, depth_from_flow
from probes.results import FlowResult


class PairState:
    """The probe state of one pair; ``flow_options`` are those of :func:`probes.flow.flow`."""

    def __init__(self, predictor, frame0, frame1, **flow_options):
        self.predictor, self.frame0, self.frame1 = predictor, frame0, frame1
        self.flow_options = flow_options
        self._flow: FlowResult | None = None

    def flow(self) -> FlowResult:
        """Dense flow, occlusion and confidence of frame 0 (computed once)."""
        if self._flow is None:
            result = flow_module.flow(self.predictor, self.frame0, self.frame1, **self.flow_options)
            if isinstance(result, list):
                raise ValueError("set_pair takes one frame pair, not a batch")
            self._flow = result
        return self._flow

    def occlusion(self) -> np.ndarray:
        """``[H, W]`` bool, True where a frame-0 pixel is hidden in frame 1 (from :meth:`flow`)."""
        return self.flow().occlusion

    def depth(self, stereo: bool = False, motion: str = "homography") -> DepthResult:
        """Relative inverse depth from the parallax of :meth:`flow` (see :func:`probes.depth.depth`)."""
        check_depth_pair(self.frame0, self.frame1)
        return depth_from_flow(self.flow(), stereo, motion)
