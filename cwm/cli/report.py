"""What every benchmark-scoring subcommand (``cwm eval tapvid | spelke | stereo-depth``) shares:
the report options, the refusal of an existing report, and the atomic JSON write."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_report_options(p: argparse.ArgumentParser, weights_help: str = "weights (default: the embedded model)") -> None:
    """``-o/--out FILE.json``, ``--overwrite``, ``--weights``, ``--device`` and ``-q/--quiet``."""
    p.add_argument("-o", "--out", type=Path, metavar="FILE.json", help="write the report as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--weights", default="default", metavar="W", help=weights_help)
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA if available)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def refuse_existing_report(args: argparse.Namespace) -> None:
    """Fail before any work when ``--out`` exists and ``--overwrite`` was not given."""
    from cwm.errors import InputError

    if args.out is not None and args.out.exists() and not args.overwrite:
        raise InputError(f"output '{args.out}' already exists; pass --overwrite to replace it")


def finish_report(args: argparse.Namespace, report: dict, table: str) -> int:
    """Print the table, write ``report`` to ``--out`` atomically (and print its path); exit 0."""
    from cwm.atomic import atomic_write

    print(table)
    if args.out is not None:
        with atomic_write(args.out, overwrite=args.overwrite) as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n")
        print(args.out)
    return 0
