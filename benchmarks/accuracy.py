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
connected components for segments) always run. The engine is :func:`cwm.evaluation_probes.evaluate`,
the one ``cwm eval`` runs; this script only parses arguments and adds extra methods. The CWM
flow, occlusion, depth and segment probes join as method ``cwm`` with ``--weights``, or by default
whenever the embedded ``cwm.load("default")`` weights load; segments also as ``cwm_jacobian``.
Each pair's flow probe runs once (``predictor.set_pair``) and serves flow, occlusion and stereo
depth, so flow's ms/pair holds the probe's time.

Time (the embedded tiny_64 model, one thread on a loaded 2-core CPU, load 2-4): --quick about
50 s, of which the poke segments take 36 s (1.9 s per scene), the Jacobian segments 2 s and the
CWM flow 1.4 s (72 ms per pair, once for flow, occlusion and depth).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a source checkout

from cwm.errors import ConfigError, CWMError  # noqa: E402

KINDS = ("flow", "occlusion", "depth")


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


def _predictor(weights: str | None):
    """The model scored as ``cwm``: ``weights``, else the embedded one if it loads, else None."""
    import cwm

    try:
        return cwm.load(weights or "default", device="cpu")
    except CWMError:
        if weights:
            raise
        return None


def main(argv: list[str] | None = None) -> int:
    from cwm.cli.report import finish_report
    from cwm.evaluation_probes import evaluate, format_evaluation

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="write the report as JSON to this file")
    parser.add_argument("--quick", action="store_true", help="20 scenes instead of 100")
    for kind in KINDS:
        parser.add_argument(f"--{kind}", action="append", default=[], metavar="NAME=MOD:FN",
                            help=f"an extra {kind} method (repeatable)")
    parser.add_argument("--weights", metavar="NAME_OR_PATH",
                        help="CWM weights for method 'cwm' (default: the embedded weights, if present)")
    args = parser.parse_args(argv)
    try:
        extra = {kind: dict(_load_method(s) for s in getattr(args, kind)) for kind in KINDS}
        predictor = _predictor(args.weights)
    except CWMError as exc:
        parser.error(str(exc))
    report = evaluate(predictor, quick=args.quick, extra=extra)
    report["weights"] = None if predictor is None else (args.weights or "default")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
    return finish_report(argparse.Namespace(out=args.out, overwrite=True), report, format_evaluation(report))


if __name__ == "__main__":
    sys.exit(main())
