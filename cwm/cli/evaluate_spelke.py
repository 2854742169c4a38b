"""``cwm eval spelke``: Spelke segments scored on SpelkeBench (SpelkeNet's AR and mIoU).

A thin layer over :mod:`cwm.spelkebench`: read and validate every image first, poke the model at
each segment's probe point, print the table and write the JSON report atomically (no partial
report).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from cwm.cli.common import add_command, positive_int

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
    p.add_argument("-o", "--out", type=Path, metavar="FILE.json", help="write the report as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--weights", default="default", metavar="W", help="weights (default: the embedded model)")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA if available)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    from cwm.atomic import atomic_write
    from cwm.cli.common import load_predictor, progress
    from cwm.errors import InputError
    from cwm.spelkebench import evaluate, format_report, read_spelkebench

    if args.out is not None and args.out.exists() and not args.overwrite:
        raise InputError(f"output '{args.out}' already exists; pass --overwrite to replace it")
    images = read_spelkebench(args.data, args.max_images)
    predictor = load_predictor(args)
    options = {} if args.method is None else {"method": args.method}

    def cwm_method(image, points):
        return predictor.segment(image, points=[tuple(p) for p in points], **options).masks

    with progress(len(images), "spelke", args.quiet) as bar:
        report = evaluate(images, {"cwm": cwm_method}, progress=lambda: bar.update(1))
    report.update({"data": str(args.data), "weights": str(args.weights)})
    print(format_report(report))
    if args.out is not None:
        with atomic_write(args.out, overwrite=args.overwrite) as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n")
        print(args.out)
    return 0
