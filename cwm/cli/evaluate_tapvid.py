"""``cwm eval tapvid``: point tracking scored by the TAP-Vid protocol, cwm beside the baselines.

A thin layer over :mod:`cwm.tapvid`: read the pickle (restricted unpickler), validate every video
before any tracking, score the methods, print the table and write the JSON report atomically
(only when every video was scored: no partial report).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from cwm.cli.common import add_command, positive_int
from cwm.cli.report import add_report_options, finish_report, refuse_existing_report

EXAMPLES = """\
cwm eval tapvid --data tapvid_davis.pkl --out davis.json          # DAVIS, query mode first
cwm eval tapvid --data tapvid_davis.pkl --query-mode strided --mode cfg
cwm eval tapvid --data synthetic.pkl --methods zero dis_chained   # baselines only
"""


def register(suites) -> argparse.ArgumentParser:
    from cwm.tapvid import METHODS

    p = add_command(suites, "tapvid", "point tracking by the TAP-Vid protocol", EXAMPLES,
                    description="Reads a TAP-Vid pickle (DAVIS: a dict of videos; Kinetics, RGB-Stacking: a "
                                "list), resizes to 256x256, samples queries (first or strided), tracks with "
                                "cwm and the baselines (zero motion, DIS chained and direct) and reports "
                                "AJ, <delta_avg and occlusion accuracy, per method and per video.")
    p.add_argument("--data", type=Path, required=True, metavar="FILE", help="a TAP-Vid .pkl file")
    p.add_argument("--query-mode", choices=("first", "strided"), default="first",
                   help="first: each track queried at its first visible frame (default); strided: every 5 frames")
    p.add_argument("--mode", choices=("direct", "chained", "cfg"), default="chained",
                   help="how cwm composes frame pairs (default chained)")
    p.add_argument("--gap", type=positive_int, default=5, metavar="G", help="cfg: the frame gap (default 5)")
    p.add_argument("--redetect", type=positive_int, default=4, metavar="K",
                   help="chained/cfg: look for lost points again every K frames (default 4; also DIS chained)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS),
                   help="methods to score (default: all)")
    p.add_argument("--max-videos", type=positive_int, default=None, metavar="N", help="score the first N videos only")
    add_report_options(p, "weights of cwm (default: the embedded model)")
    return p


def run(args: argparse.Namespace) -> int:
    from cwm.cli.common import load_predictor, progress
    from cwm.tapvid import baseline_methods, evaluate, format_report, predictor_method, read_tapvid_dataset

    refuse_existing_report(args)
    videos = read_tapvid_dataset(args.data)[: args.max_videos]
    methods = {}
    if "cwm" in args.methods:
        methods["cwm"] = predictor_method(load_predictor(args), args.mode, args.gap, args.redetect)
    baselines = baseline_methods(args.redetect)
    methods.update({name: baselines[name] for name in args.methods if name != "cwm"})
    with progress(len(videos) * len(methods), "tapvid", args.quiet) as bar:
        report = evaluate(videos, methods, args.query_mode, progress=lambda _: bar.update(1))
    report.update({"data": str(args.data), "cwm_mode": args.mode if "cwm" in methods else None,
                   "gap": args.gap, "redetect": args.redetect,
                   "weights": str(args.weights) if "cwm" in methods else None})
    return finish_report(args, report, format_report(report))
