"""Accuracy of flow, occlusion, depth and point-prompted segment methods on the fixed synthetic suite.

Usage:
    python benchmarks/accuracy.py                      # full suite (100 scenes)
    python benchmarks/accuracy.py --quick              # 20 scenes, for CI
    python benchmarks/accuracy.py --out accuracy.json
    python benchmarks/accuracy.py --flow mine=my_pkg.flow:predict   # add a flow method
    python benchmarks/accuracy.py --weights default     # the CWM probes as method "cwm"

Extra methods are ``module:callable`` with the signature ``(frame0, frame1) -> flow [H, W, 2]``
(``--occlusion``: ``-> [H, W]`` bool; ``--depth``: ``-> inverse depth [H, W]``). The baselines
(zero, Farneback, DIS; DIS forward-backward occlusion; DIS disparity; DIS-flow and colour
connected components for segments) always run. The harness
is ``cwm.evaluation``; this script only parses arguments, prints the table and writes JSON.
The CWM flow, occlusion, depth and segment probes (``probes``) join as method ``cwm`` with
``--weights``, or by default whenever the embedded ``cwm.load("default")`` weights load; segments
also as ``cwm_jacobian`` (the Jacobian variant). CWM flow, occlusion and stereo depth of a pair
read one shared flow-probe run (:class:`SharedFlow`; the same numbers as three runs), so flow's
ms/pair holds the probe's time.

Time (the embedded tiny_64 model, one thread on a loaded 2-core CPU): --quick about 50 s, of which
the poke segments take 40 s (2 s per scene) and the CWM flow 1.4 s; the full suite about 5 min.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a source checkout

from cwm.errors import ConfigError, CWMError  # noqa: E402
from cwm.evaluation import format_report, run_benchmark  # noqa: E402


def _load_method(spec: str):
    """``name=module:attr`` -> (name, callable)."""
    name, sep, target = spec.partition("=")
    module_name, colon, attr = target.partition(":")
    if not sep or not colon or not name:
        raise ConfigError(f"method must be NAME=module:callable, got {spec!r}")
    try:
        method = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot import {target!r}: {exc}") from exc
    if not callable(method):
        raise ConfigError(f"{target!r} is not callable")
    return name, method


class SharedFlow:
    """The CWM flow probe's result for each frame pair, computed once: the flow, occlusion and
    stereo-depth methods all read the same probe run with the same (default) options, so sharing
    it changes no number and saves two of three runs. Flow's ``ms_per_pair`` carries the probe's
    time; occlusion and depth then cost only their read-out."""

    def __init__(self, predictor):
        self.predictor = predictor
        self.results: dict[str, object] = {}

    def __call__(self, frame0, frame1):
        key = hashlib.sha1(np.ascontiguousarray(frame0).tobytes() + b"|" +
                           np.ascontiguousarray(frame1).tobytes()).hexdigest()
        if key not in self.results:
            self.results[key] = self.predictor.flow(frame0, frame1)
        return self.results[key]


def confidence_split(shared: SharedFlow, quick: bool) -> dict[str, float]:
    """Does the confidence mean something? Per scene, the EPE of the most confident half of the
    pixels and of the rest (pixels ranked by ``FlowResult.confidence``), averaged over the suite;
    the target is ``ratio = confident / rest <= 0.5``. Reads the shared probe results."""
    from cwm.evaluation import default_suite, make_suite_scenes
    from cwm.metrics import endpoint_error

    confident, rest = [], []
    for scene in make_suite_scenes(default_suite(quick)):
        result = shared(*scene.pair(0))
        err = endpoint_error(result.flow, scene.flow[0]).ravel()
        order = np.argsort(-result.confidence.ravel(), kind="stable")
        half = len(order) // 2
        confident.append(err[order[:half]].mean())
        rest.append(err[order[half:]].mean())
    c, r = float(np.mean(confident)), float(np.mean(rest))
    return {"epe_confident_half": c, "epe_rest": r, "ratio": c / r}


def _cwm_methods(weights: str | None) -> tuple[dict, dict, dict, dict, SharedFlow | None]:
    """The CWM flow, occlusion, depth and segment probes as methods named "cwm" (segments also
    "cwm_jacobian", the Jacobian variant), if the weights load."""
    import cwm
    from probes.depth import depth_from_flow

    try:
        predictor = cwm.load(weights or "default", device="cpu")
    except CWMError:
        if weights:
            raise
        return {}, {}, {}, {}, None
    shared = SharedFlow(predictor)
    flow = {"cwm": lambda f0, f1: shared(f0, f1).flow}
    occlusion = {"cwm": lambda f0, f1: shared(f0, f1).occlusion}
    depth = {"cwm": lambda f0, f1: depth_from_flow(shared(f0, f1), stereo=True).inverse_depth}
    segments = {"cwm": lambda f0, f1, points: predictor.segment(f0, points).masks,
                "cwm_jacobian": lambda f0, f1, points: predictor.segment(f0, points, method="jacobian").masks}
    return flow, occlusion, depth, segments, shared


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="write the report as JSON to this file")
    parser.add_argument("--quick", action="store_true", help="20 scenes instead of 100")
    for kind in ("flow", "occlusion", "depth"):
        parser.add_argument(f"--{kind}", action="append", default=[], metavar="NAME=MOD:FN",
                            help=f"an extra {kind} method (repeatable)")
    parser.add_argument("--weights", metavar="NAME_OR_PATH",
                        help="CWM weights for method 'cwm' (default: the embedded weights, if present)")
    args = parser.parse_args(argv)
    try:
        extra = {kind: dict(_load_method(s) for s in getattr(args, kind))
                 for kind in ("flow", "occlusion", "depth")}
        cwm_flow, cwm_occlusion, cwm_depth, cwm_segments, shared = _cwm_methods(args.weights)
    except CWMError as exc:
        parser.error(str(exc))
    extra["flow"], extra["occlusion"] = {**cwm_flow, **extra["flow"]}, {**cwm_occlusion, **extra["occlusion"]}
    extra["depth"] = {**cwm_depth, **extra["depth"]}
    start = time.perf_counter()
    report = run_benchmark(extra["flow"], extra["occlusion"], extra["depth"], quick=args.quick,
                           segment_methods=cwm_segments)
    if shared is not None:
        report["cwm_confidence"] = confidence_split(shared, args.quick)
    report["wall_seconds"] = time.perf_counter() - start
    print(format_report(report))
    if shared is not None:
        c = report["cwm_confidence"]
        print(f"\ncwm confidence: EPE {c['epe_confident_half']:.3f} on the most confident half of the "
              f"pixels, {c['epe_rest']:.3f} on the rest (ratio {c['ratio']:.2f}; target <= 0.5)")
    print(f"\nwall time {report['wall_seconds']:.1f} s")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
