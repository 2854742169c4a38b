"""Accuracy of flow, occlusion and depth methods on the fixed synthetic suite.

Usage:
    python benchmarks/accuracy.py                      # full suite (100 scenes)
    python benchmarks/accuracy.py --quick              # 20 scenes, for CI
    python benchmarks/accuracy.py --out accuracy.json
    python benchmarks/accuracy.py --flow mine=my_pkg.flow:predict   # add a flow method

Extra methods are ``module:callable`` with the signature ``(frame0, frame1) -> flow [H, W, 2]``
(``--occlusion``: ``-> [H, W]`` bool; ``--depth``: ``-> inverse depth [H, W]``). The baselines
(zero, Farneback, DIS; DIS forward-backward occlusion; DIS disparity) always run. The harness
is ``cwm.evaluation``; this script only parses arguments, prints the table and writes JSON.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a source checkout

from cwm.errors import ConfigError  # noqa: E402
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="write the report as JSON to this file")
    parser.add_argument("--quick", action="store_true", help="20 scenes instead of 100")
    for kind in ("flow", "occlusion", "depth"):
        parser.add_argument(f"--{kind}", action="append", default=[], metavar="NAME=MOD:FN",
                            help=f"an extra {kind} method (repeatable)")
    args = parser.parse_args(argv)
    try:
        extra = {kind: dict(_load_method(s) for s in getattr(args, kind))
                 for kind in ("flow", "occlusion", "depth")}
    except ConfigError as exc:
        parser.error(str(exc))
    start = time.perf_counter()
    report = run_benchmark(extra["flow"], extra["occlusion"], extra["depth"], quick=args.quick)
    report["wall_seconds"] = time.perf_counter() - start
    print(format_report(report))
    print(f"\nwall time {report['wall_seconds']:.1f} s")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
