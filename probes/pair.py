"""One frame pair's probe work, computed once and read many ways (the predictor's front door).

>>> state = predictor.set_pair(frame0, frame1)     # nothing runs yet
>>> state.flow().flow, state.occlusion()           # one flow probe ...
>>> state.depth(), state.depth(stereo=True)        # ... that every read-out below reuses
>>> state.segment([(40, 30)]), state.segment([(40, 30), (12, 50)])   # the second pays one point
>>> state.track([(40, 30)])                        # kept per query

The flow probe (:func:`probes.flow.flow`, multi-scale and verified by default) runs at the first
read and is kept; occlusion is its occlusion map and depth reads the parallax of the same flow
(:func:`probes.depth.depth_from_flow`), so ``state.depth()`` equals ``predictor.depth(frame0,
frame1)`` with the same flow options at no further model cost.

Segments (of frame 0) keep every poke's affinity map (:class:`probes.affinity.PokeMaps`): asking
again costs nothing, and a longer point list pays only for its new points. A point's anchors are
seeded by its place in the list, as in :func:`probes.segments.segment`, so extend a list to reuse
it (``[a, b]`` then ``[a, b, c]``); automatic mode reuses the maps of its scan and its segments.
Tracks are kept per query (points and options); each equals ``predictor.track`` of the pair.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from probes import flow as flow_module
from probes.affinity import PokeMaps
from probes.depth import DepthResult, check_depth_pair, depth_from_flow
from probes.results import FlowResult, SegmentResult, TrackResult
from probes.segment_config import SegmentConfig
from probes.segments import segment


class PairState:
    """The probe state of one pair; ``flow_options`` are those of :func:`probes.flow.flow`
    (and the defaults of :meth:`track`)."""

    def __init__(self, predictor, frame0, frame1, **flow_options):
        self.predictor, self.frame0, self.frame1 = predictor, frame0, frame1
        self.flow_options = flow_options
        self._flow: FlowResult | None = None
        self._poke_maps = PokeMaps()
        self._tracks: dict[tuple, TrackResult] = {}

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

    def segment(self, points: Sequence[tuple[float, float]] | None = None, config: SegmentConfig | None = None,
                **overrides: Any) -> SegmentResult:
        """Spelke segments of frame 0 at ``(x, y)`` points (None: automatic mode), equal to
        ``predictor.segment(frame0, points, config, **overrides)``; poke maps already computed
        for this frame are reused, and ``cost`` counts only the new ones."""
        return segment(self.predictor, self.frame0, points, config, maps=self._poke_maps, **overrides)

    def track(self, points, **options) -> TrackResult:
        """Where ``points`` ``[N, 2]`` ``(x, y)`` of frame 0 are in frame 1: ``predictor.track(frame0,
        frame1, points, **options)`` with ``options`` over this state's flow options, computed
        once per query (the same points and options give the kept result)."""
        options = {**self.flow_options, **options}
        try:
            pts = np.ascontiguousarray(points, np.float64)
        except (TypeError, ValueError):  # not points: the probe says what is wrong
            return self._track(points, options)
        key = (pts.shape, pts.tobytes(), tuple(sorted((k, repr(v)) for k, v in options.items())))
        if key not in self._tracks:
            self._tracks[key] = self._track(points, options)
        return self._tracks[key]

    def _track(self, points, options: dict) -> TrackResult:
        result = flow_module.track(self.predictor, self.frame0, self.frame1, points, **options)
        if isinstance(result, list):
            raise ValueError("set_pair takes one frame pair, not a batch")
        return result
