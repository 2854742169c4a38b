"""Settings of :func:`probes.segments.segment` (:class:`SegmentConfig`) and their resolution from
keyword overrides."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cwm.errors import ConfigError, did_you_mean

#: Automatic mode tries at most this many candidates per segment it may keep.
MAX_TRIES_PER_SEGMENT = 3
#: Engine mode of the poke protocol's flow reads (both ``read`` protocols; ``SegmentConfig.flow``
#: may override it). Forward mode, not :data:`probes.core.DEFAULT_MODE`'s finite differences: a
#: counterfactual read batches many pokes' tangents on one primal each (vmap shares it), the
#: segment cost accounting (``SegmentResult.cost``, "jvps") and its tests count forward-mode
#: items, and the reads were tuned on it.
FLOW_READ_MODE = "jvp"
#: Flow-probe options of ``read="reprobe"`` (overridden by ``SegmentConfig.flow``). The prediction
#: being measured is our own synthetic frame, so revealing a quarter of it costs nothing in
#: fairness and can show the model how the poked object moved.
DEFAULT_FLOW_OPTIONS = {"visible": 0.25, "num_masks": 2, "mode": FLOW_READ_MODE}


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


def resolve_config(config: SegmentConfig | None, overrides: dict[str, Any]) -> SegmentConfig:
    cfg = config or SegmentConfig()
    names = {f.name for f in dataclasses.fields(SegmentConfig)}
    for key in overrides:
        if key not in names:
            raise ConfigError(f"segment: unknown option {key!r}"
                              + (did_you_mean(key, names) or f"; options are {sorted(names)}"))
    if "magnitudes" in overrides:
        overrides["magnitudes"] = tuple(np.atleast_1d(overrides["magnitudes"]).tolist())
    return dataclasses.replace(cfg, **overrides) if overrides else cfg
