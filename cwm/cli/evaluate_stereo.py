"""``cwm eval stereo-depth``: depth order of point pairs from stereo views (ZWM's protocol).

A thin layer over :mod:`cwm.stereodepth`: validate every entry first, track each point from one
view to the other with cwm and DIS, grade the pairs, print the table and write the JSON report
atomically (no partial report).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from cwm.cli.common import add_command, positive_int
from cwm.cli.report import add_report_options, finish_report, refuse_existing_report

EXAMPLES = """\
cwm eval stereo-depth --data stereo_depth/ --out stereo.json     # dataset.json + frames/
cwm eval stereo-depth --data stereo_depth/dataset.json --frames /data/frames --methods dis
"""
METHODS = ("cwm", "dis")


def register(suites) -> argparse.ArgumentParser:
    p = add_command(suites, "stereo-depth", "depth order of point pairs from stereo views (ZWM)", EXAMPLES,
                    description="Reads ZWM's stereo-depth layout (dataset.json with two points per image, "
                                "frames/), tracks each point from the query view to the target view, and "
                                "scores whether the nearer point of each pair gets the larger end-point "
                                "error (disparity); accuracy per dataset with SEM and a bootstrap interval.")
    p.add_argument("--data", type=Path, required=True, metavar="DIR", help="folder with dataset.json (or the json)")
    p.add_argument("--frames", type=Path, default=None, metavar="DIR", help="frames folder (default: DATA/frames)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS), help="default: both")
    p.add_argument("--max-pairs", type=positive_int, default=None, metavar="N", help="the first N pairs only")
    add_report_options(p)
    return p


def run(args: argparse.Namespace) -> int:
    from cwm.cli.common import load_predictor, progress
    from cwm.stereodepth import dis_method, evaluate, format_report, read_stereo_dataset

    refuse_existing_report(args)
    pairs, unpaired = read_stereo_dataset(args.data, args.frames)
    pairs = pairs[: args.max_pairs]
    methods = {}
    if "cwm" in args.methods:
        predictor = load_predictor(args)
        methods["cwm"] = lambda q, t, pts: predictor.track(q, t, pts).tracks
    if "dis" in args.methods:
        methods["dis"] = dis_method
    images = len({p.files for p in pairs})
    with progress(images * len(methods), "stereo-depth", args.quiet) as bar:
        report = evaluate(pairs, methods, progress=lambda: bar.update(1))
    report.update({"data": str(args.data), "unpaired_entries": unpaired,
                   "weights": str(args.weights) if "cwm" in methods else None})
    return finish_report(args, report, format_report(report))
