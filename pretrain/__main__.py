"""Command line: ``python -m pretrain`` (wrapped as ``cwm pretrain``).

Examples::

    # train on the synthetic scenes, one CPU
    python -m pretrain --data synthetic --output-dir runs/tiny train.max_steps=2000

    # a video folder with a YAML config and dotted overrides, 8 GPUs
    accelerate launch --num_processes 8 -m pretrain --config pretrain/configs/base_224.yaml \\
        --data /data/kinetics --output-dir runs/base optim.base_lr=1.5e-4

    # continue the newest checkpoint of a run (same step count, data order, RNG, schedule)
    python -m pretrain --output-dir runs/tiny --resume
    python -m pretrain --output-dir runs/tiny --resume-from runs/tiny/checkpoints/step_00001000

    # export any checkpoint to a weights folder that cwm.load reads
    python -m pretrain export runs/tiny/checkpoints/step_00001000 --out weights/tiny
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Sequence

from cwm.errors import CWMError, unknown_options

EPILOG = """examples:
  python -m pretrain --data synthetic --output-dir runs/tiny train.max_steps=2000
  python -m pretrain --config pretrain/configs/embedded_tiny64.yaml --output-dir runs/default
  accelerate launch --multi_gpu --num_processes 8 -m pretrain --config pretrain/configs/base_224.yaml \\
      --data /data/videos --output-dir runs/base
  python -m pretrain --output-dir runs/tiny --resume
  python -m pretrain export runs/tiny --out weights/tiny

overrides are section.field=value (YAML values), applied after --config:
  model.variant=tiny_64  model.arch.enc_depth=2
  data.source=synthetic|photos|FOLDER  data.photo_folders=[DIR]  data.photo_fraction=0.7
  data.gap_frames=[5,15]  data.gap_ms=150  data.num_workers=2
  optim.base_lr=1.5e-4  optim.warmup_steps=1000  optim.weight_decay=0.05
  train.batch_size=32  train.max_steps=10000  train.mask_ratio=0.99|[0.625,0.94]
  train.mixed_precision=auto|no|bf16|fp16  train.checkpoint_every=1000  train.log_with=tensorboard
see pretrain/README.md and pretrain/config.py for every field."""


class _Parser(argparse.ArgumentParser):
    """Errors are one line, with the closest option names for unknown ones (as in ``cwm``)."""

    def error(self, message: str):  # type: ignore[override]
        message = " ".join(message.split())
        unknown = re.fullmatch(r"unrecognized arguments: (.*)", message)
        if unknown:
            message = unknown_options(self, unknown.group(1).split())
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _train_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m pretrain", description="Pretrain a CWM with Accelerate (any number of processes).",
        epilog=EPILOG + "\n\nexport: python -m pretrain export RUN_OR_CHECKPOINT [--out FOLDER]",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML file with sections model/data/optim/train")
    p.add_argument("--output-dir", help="run folder (= train.output_dir)")
    p.add_argument("--data", help="'synthetic' or a video folder (= data.source)")
    p.add_argument("--variant", help="model variant (= model.variant)")
    p.add_argument("--init", metavar="WEIGHTS",
                   help="start from these weights ('default', a weights folder, .safetensors or official .pth; "
                        "= train.init), e.g. to fine-tune or to continue a run from its exported weights")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --output-dir from its newest checkpoint (start fresh if it has none)")
    p.add_argument("--resume-from", metavar="CHECKPOINT", help="continue from this checkpoint folder")
    p.add_argument("overrides", nargs="*", metavar="section.field=value")
    return p


def _export_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m pretrain export",
                                description="Export a training checkpoint to a weights folder (cwm.load reads it).")
    p.add_argument("checkpoint", help="a checkpoint folder (RUN/checkpoints/step_N) or a run folder (its newest)")
    p.add_argument("--out", help="destination folder (default: RUN/export-step_N)")
    return p


def _config(args: argparse.Namespace, resuming: bool):
    from pretrain.config import load_yaml, merge, PretrainConfig, resolve

    overrides = list(args.overrides)
    for flag, key in ((args.output_dir, "train.output_dir"), (args.data, "data.source"),
                      (args.variant, "model.variant"), (args.init, "train.init")):
        if flag is not None:
            overrides.append(f"{key}={flag}")
    cfg = resolve(args.config, overrides)
    saved = Path(cfg.train.output_dir or "") / "config.yaml"
    if resuming and cfg.train.output_dir and saved.is_file():
        # A resumed run starts from its own resolved config; the file and flags given now win.
        base = merge(PretrainConfig(), load_yaml(saved), str(saved))
        cfg = resolve(args.config, overrides, base=base)
    return cfg


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m pretrain`` and ``cwm pretrain``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["export"]:
            from pretrain.export import export_checkpoint

            args = _export_parser().parse_args(argv[1:])
            print(f"exported to {export_checkpoint(args.checkpoint, args.out)}")
            return 0
        if argv[:1] == ["train"]:
            argv = argv[1:]
        args = _train_parser().parse_intermixed_args(argv)
        from pretrain.train import train

        resume = args.resume_from or ("latest" if args.resume else None)
        cfg = _config(args, resume is not None)
        result = train(cfg, resume=resume)
    except CWMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if result.is_main_process:
        print(f"done: step {result.step}, loss {result.loss:.5f}, {result.samples_per_s:.1f} samples/s, "
              f"data {100 * result.data_fraction:.0f}% of step time")
        from pretrain.skips import LOG_NAME, summary

        for line in summary(result.skipped_videos, Path(cfg.train.output_dir) / LOG_NAME):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
