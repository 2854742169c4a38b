"""``cwm eval``: score a CWM's flow, occlusion, depth and segments against the baselines on the
synthetic suite.

A thin layer over :func:`cwm.evaluation_probes.evaluate` (the engine ``benchmarks/accuracy.py``
also runs), with the loaded model's probes as methods named ``cwm``; each pair's flow probe runs
once and serves flow, occlusion and depth.
``cwm eval tapvid --data FILE`` scores point tracking by the TAP-Vid protocol instead
(:mod:`cwm.cli.evaluate_tapvid`), ``cwm eval spelke --data FILE`` segments on SpelkeBench
(:mod:`cwm.cli.evaluate_spelke`), ``cwm eval stereo-depth --data DIR`` orders point depths from
stereo views (:mod:`cwm.cli.evaluate_stereo`).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from cwm.cli.common import add_command
from cwm.evaluation_probes import PROBES

EXAMPLES = """\
cwm eval --quick                         # 20 scenes, the embedded model against zero/Farneback/DIS
cwm eval --weights runs/tiny/export --out accuracy.json
cwm eval --baselines-only --quick        # the baselines alone
cwm eval tapvid --data tapvid_davis.pkl --out report.json   # point tracking, TAP-Vid protocol
cwm eval spelke --data spelke_bench.h5 --out spelke.json    # Spelke segments, SpelkeBench
cwm eval stereo-depth --data stereo_depth/ --out depth.json # depth order of point pairs (ZWM)
"""


def register(sub) -> argparse.ArgumentParser:
    p = add_command(sub, "eval", "accuracy on the synthetic suite, against baselines", EXAMPLES,
                    description="Scores flow (EPE, Fl-all), occlusion (F1), stereo depth (ordinal "
                                "accuracy) and point-prompted segments (mIoU) of the model's probes and "
                                "of the baselines (zero flow, Farneback, DIS; flow- and colour-connected "
                                "components) on the fixed synthetic suite, prints the tables and "
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
    from cwm.cli.common import load_predictor
    from cwm.cli.report import finish_report, refuse_existing_report
    from cwm.evaluation_probes import evaluate, format_evaluation

    refuse_existing_report(args)
    predictor = None if args.baselines_only else load_predictor(args)
    report = evaluate(predictor, probes=args.probes, quick=args.quick)
    report["weights"] = None if args.baselines_only else str(args.weights)
    return finish_report(args, report, format_evaluation(report))
