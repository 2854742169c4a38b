"""The one evaluation engine of the CWM's probes on the synthetic suite (``cwm eval`` and
``benchmarks/accuracy.py`` both call :func:`evaluate`).

Each frame pair gets one :class:`probes.pair.PairState` (``predictor.set_pair``), so the flow probe
runs once per pair however many read-outs score it: flow, occlusion and stereo depth read the same
run (the same numbers as three runs), flow's ``ms_per_pair`` carries the probe's time, and the
confidence split reads it again for free. Segments are point-prompted through the same states
(:meth:`probes.pair.PairState.segment`), as method ``cwm`` (the poke protocol) and
``cwm_jacobian`` (the Jacobian variant). The scores themselves are :mod:`cwm.evaluation`'s::

    from cwm.evaluation_probes import evaluate, format_evaluation
    report = evaluate(cwm.load("default"), quick=True)
    print(format_evaluation(report))
"""
from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from cwm.errors import ConfigError

if TYPE_CHECKING:  # annotations only: probes.pair imports torch
    from probes.pair import PairState

#: What :func:`evaluate` can score of a model, in report order.
PROBES = ("flow", "occlusion", "depth", "segments")
#: Segment methods scored: name -> keyword overrides of ``PairState.segment``.
SEGMENT_VARIANTS = {"cwm": {}, "cwm_jacobian": {"method": "jacobian"}}


class PairStates:
    """One :class:`probes.pair.PairState` per frame pair, found by the frames' bytes.

    ``states(frame0, frame1)`` is the pair's state, created at the first call; ``len(states)``
    counts the pairs met. ``predictor.set_pair`` makes each state, with ``flow_options``.
    """

    def __init__(self, predictor, **flow_options):
        self.predictor, self.flow_options = predictor, flow_options
        self._states: dict[str, object] = {}

    def __len__(self) -> int:
        return len(self._states)

    def __call__(self, frame0: np.ndarray, frame1: np.ndarray) -> PairState:
        digest = hashlib.sha1()
        for frame in (frame0, frame1):
            frame = np.ascontiguousarray(frame)
            digest.update(repr((frame.shape, frame.dtype.str)).encode())
            digest.update(frame.tobytes())
        key = digest.hexdigest()
        if key not in self._states:
            self._states[key] = self.predictor.set_pair(frame0, frame1, **self.flow_options)
        return self._states[key]


def probe_methods(states: PairStates, probes: Sequence[str] = PROBES) -> dict[str, dict]:
    """The model's methods in the form :func:`cwm.evaluation.run_benchmark` scores, all reading
    ``states``: ``{"flow": {"cwm": fn}, "occlusion": ..., "depth": ..., "segments": {...}}``
    (empty for a probe not in ``probes``). Depth is scored on the stereo scenes, so it reads the
    flow as disparity (``stereo=True``)."""
    unknown = sorted(set(probes) - set(PROBES))
    if unknown:
        raise ConfigError(f"unknown probes {unknown}; choose from {', '.join(PROBES)}")
    readers = {"flow": lambda f0, f1: states(f0, f1).flow().flow,
               "occlusion": lambda f0, f1: states(f0, f1).occlusion(),
               "depth": lambda f0, f1: states(f0, f1).depth(stereo=True).inverse_depth}
    methods: dict[str, dict] = {kind: ({"cwm": readers[kind]} if kind in probes else {}) for kind in readers}
    methods["segments"] = {}
    if "segments" in probes:
        for name, overrides in SEGMENT_VARIANTS.items():
            methods["segments"][name] = (lambda f0, f1, points, kw=overrides:
                                         states(f0, f1).segment(points, **kw).masks)
    return methods


def confidence_split(states: PairStates, quick: bool) -> dict[str, float]:
    """Does the confidence mean something? Per scene, the EPE of the most confident half of the
    pixels and of the rest (pixels ranked by ``FlowResult.confidence``), averaged over the suite;
    the target is ``ratio = confident / rest <= 0.5``. Reads the states' flow (no new probe run
    for pairs already scored)."""
    from cwm.evaluation import default_suite, make_suite_scenes
    from cwm.metrics import endpoint_error

    confident, rest = [], []
    for scene in make_suite_scenes(default_suite(quick)):
        result = states(*scene.pair(0)).flow()
        err = endpoint_error(result.flow, scene.flow[0]).ravel()
        order = np.argsort(-result.confidence.ravel(), kind="stable")
        half = len(order) // 2
        confident.append(err[order[:half]].mean())
        rest.append(err[order[half:]].mean())
    c, r = float(np.mean(confident)), float(np.mean(rest))
    return {"epe_confident_half": c, "epe_rest": r, "ratio": c / r}


def evaluate(predictor=None, probes: Sequence[str] = PROBES, quick: bool = False,
             extra: Mapping[str, Mapping] | None = None, speed_seconds: float = 1.0) -> dict:
    """Score the baselines, the model's ``probes`` (method ``cwm``; none when ``predictor`` is
    None) and ``extra`` methods on the synthetic suite, as one JSON-ready report.

    Args:
        predictor: a :class:`cwm.predictor.CWMPredictor` (anything with ``set_pair``), or None.
        probes: which of :data:`PROBES` to score.
        quick: the 20-scene suite instead of 100.
        extra: ``{"flow" | "occlusion" | "depth" | "segments": {name: callable}}`` scored too
            (same name replaces a baseline or ``cwm``); callables as :mod:`cwm.evaluation` says.
        speed_seconds: time spent measuring the scene generator's speed.
    Returns:
        :func:`cwm.evaluation.run_benchmark`'s report plus ``weights`` (None here; callers set
        it), ``pairs_probed`` (frame pairs the model was asked about, one probe state each), ``cwm_confidence``
        (:func:`confidence_split`, when flow is scored) and ``wall_seconds``.
    """
    from cwm.evaluation import run_benchmark

    extra = dict(extra or {})
    unknown = sorted(set(extra) - set(PROBES))
    if unknown:
        raise ConfigError(f"unknown method kinds {unknown}; choose from {', '.join(PROBES)}")
    start = time.perf_counter()
    states = PairStates(predictor) if predictor is not None else None
    methods = probe_methods(states, probes) if states is not None else {kind: {} for kind in PROBES}
    methods = {kind: {**methods[kind], **extra.get(kind, {})} for kind in PROBES}
    report = run_benchmark(methods["flow"], methods["occlusion"], methods["depth"], quick=quick,
                           speed_seconds=speed_seconds, segment_methods=methods["segments"])
    report["weights"] = None
    report["pairs_probed"] = len(states) if states is not None else 0
    if states is not None and "flow" in probes:
        report["cwm_confidence"] = confidence_split(states, quick)
    report["wall_seconds"] = time.perf_counter() - start
    return report


def format_evaluation(report: dict) -> str:
    """:func:`cwm.evaluation.format_report`'s tables, then the confidence split and wall time."""
    from cwm.evaluation import format_report

    lines = [format_report(report)]
    c = report.get("cwm_confidence")
    if c is not None:
        lines.append(f"\ncwm confidence: EPE {c['epe_confident_half']:.3f} on the most confident half of the "
                     f"pixels, {c['epe_rest']:.3f} on the rest (ratio {c['ratio']:.2f}; target <= 0.5)")
    if "wall_seconds" in report:
        lines.append(f"\nwall time {report['wall_seconds']:.1f} s")
    return "\n".join(lines)
