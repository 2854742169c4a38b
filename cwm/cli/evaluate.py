"""``cwm eval``: score a CWM's flow, occlusion and depth against the baselines on the synthetic suite.

A thin layer over :func:`cwm.evaluation.run_benchmark` (the same harness as
``benchmarks/accuracy.py``), with the loaded model's probes added as methods named ``cwm``.
``cwm eval tapvid --data FILE`` scores point tracking by the TAP-Vid protocol instead
(:mod:`cwm.cli.evaluate_tapvid`), ``cwm eval spelke --data FILE`` segments on SpelkeBench
(:mod:`cwm.cli.evaluate_spelke`), ``cwm eval stereo-depth --data DIR`` orders point depths from
stereo views (:mod:`cwm.cli.evaluate_stereo`).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from cwm.cli.common import add_command

EXAMPLES = """\
cwm eval --quick                         # 20 scenes, the embedded model against zero/Farneback/DIS
cwm eval --weights runs/tiny/export --out accuracy.json
cwm eval --baselines-only --quick        # the baselines alone
cwm eval tapvid --data tapvid_davis.pkl --out report.json   # point tracking, TAP-Vid protocol
cwm eval spelke --data spelke_bench.h5 --out spelke.json    # Spelke segments, SpelkeBench
cwm eval stereo-depth --data stereo_depth/ --out depth.json # depth order of point pairs (ZWM)
"""
PROBES = ("flow", "occlusion", "depth")


def register(sub) -> argparse.ArgumentParser:
    p = add_command(sub, "eval", "accuracy on the synthetic suite, against baselines", EXAMPLES,
                    description="Scores flow (EPE, Fl-all), occlusion (F1) and stereo depth (ordinal "
                                "accuracy) of the model's probes and of the baselines (zero flow, "
                                "Farneback, DIS) on the fixed synthetic suite, prints the tables and "
                                "optionally writes the report as JSON.")
    p.add_argument("--quick", action="store_true", help="20 scenes instead of 100")
    p.add_argument("--baselines-only", action="store_true", help="do not load or score a model")
    p.add_argument("--probes", nargs="+", choices=PROBES, default=list(PROBES),
                   help="which probes of the model to score (default: all)")
    p.add_argument("-o", "--out", type=Path, metavar="FILE.json", help="write the report as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    m = p.add_argument_group("model")
    m.add_argument("--weights", default="default", metavar="W", help="weights to score (default: the embedded model)")
    m.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA if available)")
    from cwm.cli import evaluate_spelke, evaluate_stereo, evaluate_tapvid

    suites = p.add_subparsers(dest="suite", metavar="SUITE", parser_class=type(p))
    evaluate_tapvid.register(suites)
    evaluate_spelke.register(suites)
    evaluate_stereo.register(suites)
    return p


def run(args: argparse.Namespace) -> int:
    if getattr(args, "suite", None) == "tapvid":
        from cwm.cli import evaluate_tapvid

        return evaluate_tapvid.run(args)
    if getattr(args, "suite", None) == "spelke":
        from cwm.cli import evaluate_spelke

        return evaluate_spelke.run(args)
    if getattr(args, "suite", None) == "stereo-depth":
        from cwm.cli import evaluate_stereo

        return evaluate_stereo.run(args)
    from cwm.atomic import atomic_write
    from cwm.cli.common import load_predictor
    from cwm.errors import InputError
    from cwm.evaluation import format_report, run_benchmark

    if args.out is not None and args.out.exists() and not args.overwrite:
        raise InputError(f"output '{args.out}' already exists; pass --overwrite to replace it")
    methods: dict[str, dict] = {"flow": {}, "occlusion": {}, "depth": {}}
    if not args.baselines_only:
        predictor = load_predictor(args)
        for probe in args.probes:
            methods[probe]["cwm"] = _method(probe, predictor)
    report = run_benchmark(methods["flow"], methods["occlusion"], methods["depth"], quick=args.quick)
    report["weights"] = None if args.baselines_only else str(args.weights)
    print(format_report(report))
    if args.out is not None:
        with atomic_write(args.out, overwrite=args.overwrite) as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n")
        print(args.out)
    return 0


def _method(probe: str, predictor):
    """``(frame0, frame1) -> array`` of one probe, the form :mod:`cwm.evaluation` scores."""
    if probe == "flow":
        from probes.flow import flow_method

        return flow_method(predictor)
    if probe == "occlusion":
        from probes.occlusion import occlusion_method

        return occlusion_method(predictor)
    from probes.depth import depth

    return lambda f0, f1: depth(predictor, f0, f1, stereo=True).inverse_depth  # scored on stereo scenes
