"""``cwm pretrain``: train a CWM (a thin wrapper: every argument goes to ``python -m pretrain``)."""
from __future__ import annotations

import argparse

from cwm.cli.common import add_command

EXAMPLES = """\
cwm pretrain --data synthetic --output-dir runs/tiny train.max_steps=2000
cwm pretrain --output-dir runs/tiny --resume                  # continue the newest checkpoint
cwm pretrain export runs/tiny --out weights/tiny              # then: cwm flow video.mp4 --weights weights/tiny
accelerate launch --num_processes 8 -m pretrain --config base.yaml --data /data/videos   # multi-GPU
"""


def register(sub) -> argparse.ArgumentParser:
    p = add_command(sub, "pretrain", "train a CWM (arguments go to `python -m pretrain`)", EXAMPLES,
                    add_help=False)
    p.set_defaults(passthrough=True)
    return p


def run(args: argparse.Namespace) -> int:
    from pretrain.__main__ import main

    if "-h" in args.rest or "--help" in args.rest:
        examples = "".join(f"  {line}\n" for line in EXAMPLES.splitlines())
        print(f"cwm pretrain: every argument is passed to `python -m pretrain`.\n\nexamples:\n{examples}")
    return int(main(args.rest) or 0)
