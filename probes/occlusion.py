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

from probes.visibility import (  # the scores, re-exported
    DEFAULT_OCCLUSION_THRESHOLD,
    check_threshold,
    consistency_occlusion,
    normalised_scores,
)

__all__ = ["DEFAULT_OCCLUSION_THRESHOLD", "check_threshold", "consistency_occlusion", "normalised_scores"]
