"""``cwm eval spelke``: Spelke segments scored on SpelkeBench (SpelkeNet's AR and mIoU).

A thin layer over :mod:`cwm.spelkebench`: read and validate every image first, poke the model at
each segment's probe point, print the table and write the JSON report atomically (no partial
report).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from cwm.cli.common import add_command, positive_int
from cwm.cli.report import add_report_options, finish_report, refuse_existing_report

EXAMPLES = """\
cwm eval spelke --data spelke_bench.h5 --out spelke.json
cwm eval spelke --data spelke_bench.h5 --max-images 50 --method jacobian
"""


def register(suites) -> argparse.ArgumentParser:
    p = add_command(suites, "spelke", "Spelke segments on SpelkeBench (AR, mIoU)", EXAMPLES,
                    description="Reads SpelkeNet's spelke_bench.h5 (needs h5py), resizes to 256x256, "
                                "segments each ground-truth segment from its probe point and reports "
                                "AR and mIoU as SpelkeNet computes them, plus AP and the COCO-style "
                                "Hungarian view (AR over IoU .50:.05:.95, matched mIoU).")
    p.add_argument("--data", type=Path, required=True, metavar="FILE", help="a SpelkeBench .h5 file")
    p.add_argument("--max-images", type=positive_int, default=None, metavar="N", help="the first N images only")
    p.add_argument("--method", choices=("poke", "jacobian"), default=None,
                   help="segment probe method (default: the probe's)")
    add_report_options(p)
    return p


def run(args: argparse.Namespace) -> int:
    from cwm.cli.common import load_predictor, progress
    from cwm.spelkebench import evaluate, format_report, read_spelkebench

    refuse_existing_report(args)
    images = read_spelkebench(args.data, args.max_images)
    predictor = load_predictor(args)
    options = {} if args.method is None else {"method": args.method}

    def cwm_method(image, points):
        return predictor.segment(image, points=[tuple(p) for p in points], **options).masks

    with progress(len(images), "spelke", args.quiet) as bar:
        report = evaluate(images, {"cwm": cwm_method}, progress=lambda: bar.update(1))
    report.update({"data": str(args.data), "weights": str(args.weights)})
    return finish_report(args, report, format_report(report))
