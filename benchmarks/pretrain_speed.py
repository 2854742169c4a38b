"""Pretraining throughput: samples/s, tokens/s and the share of step time spent waiting for data.

Trains a few steps of two small configs on a folder of mp4 files (written here from the
synthetic scenes unless ``--videos`` is given) with DataLoader workers, through the real loop
(:func:`pretrain.train.train`). ``data_fraction`` is the time the loop waits for the next batch
over the whole step time, after the first steps (worker start-up) are left out. Tokens are
input tokens, ``T * h * w`` per clip. Target: data_fraction < 0.10 with 2 workers.

    python benchmarks/pretrain_speed.py --out pretrain_speed.json

``--step`` times the optimizer step alone instead (no data loading): the official-style step
(:mod:`step_reference`) against ours at encoder 192x6, decoder 128x2, 64 px, patch 8, batch 32,
on the same weights, masks and batch, fp32 and bf16, alternating timed windows of the two so that
other load on the machine hits both alike; and the ViT-B/8 224 step (``eccv2024_2frame_b8``) on
this CPU, with its FLOPs and an estimated GPU MFU:

    python benchmarks/pretrain_speed.py --step --out pretrain_step.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

#: name -> (variant, batch size per step)
CONFIGS = {"tiny_64": ("tiny_64", 32), "small_64": ("small_64", 16)}


def write_videos(folder: Path, count: int, frames: int, size: int) -> None:
    from cwm.io import write_video
    from cwm.synthetic import make_scene

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        write_video(folder / f"clip_{i:03d}.mp4", make_scene(i, (size, size), num_frames=frames).frames, fps=30)


def measure(name: str, videos: Path, steps: int, workers: int, threads: int, precision: str) -> dict[str, float]:
    from pretrain.config import resolve
    from pretrain.train import train

    variant, batch = CONFIGS[name]
    with tempfile.TemporaryDirectory() as run:
        cfg = resolve(overrides=[
            f"model.variant={variant}", f"data.source={videos}", f"data.num_workers={workers}",
            "data.gap_frames=[1,4]", f"train.output_dir={run}", f"train.batch_size={batch}",
            f"train.max_steps={steps}", "train.eval_every=0", "train.checkpoint_every=0",
            "train.export_at_end=false", "train.progress=off", f"train.log_every={steps}",
            f"train.num_threads={threads}", f"train.mixed_precision={precision}", "train.eval_batch=2"])
        result = train(cfg)
    return {"samples_per_s": round(result.samples_per_s, 2), "tokens_per_s": round(result.tokens_per_s, 1),
            "data_fraction": round(result.data_fraction, 4), "batch_size": batch, "steps": steps}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="write the table here as JSON")
    p.add_argument("--videos", help="a folder of videos (default: write 8 synthetic mp4 files)")
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--steps", type=int, default=30, help="optimizer steps per config (the first 2 are not timed)")
    p.add_argument("--num-videos", type=int, default=8, help="synthetic mp4 files to write (without --videos)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) - 2),
                   help="torch threads (default: the cores left after 2 workers, at least 1)")
    p.add_argument("--precision", default="no", choices=["no", "bf16"])
    p.add_argument("--step", action="store_true", help="time the optimizer step: official style vs ours (see above)")
    p.add_argument("--compile", action="store_true", help="--step: also time ours under torch.compile")
    p.add_argument("--compile-only", action="store_true", help="--step: only the compiled rows")
    p.add_argument("--precisions", nargs="+", default=["no", "bf16"], choices=["no", "bf16"])
    p.add_argument("--rounds", type=int, default=5, help="--step: alternating timed windows per precision")
    args = p.parse_args(argv)
    if args.step:
        from pretrain_step import run_step_benchmark

        return run_step_benchmark(args)
    load_start = [round(x, 2) for x in os.getloadavg()]  # other work on the machine skews the figures
    with tempfile.TemporaryDirectory() as tmp:
        videos = Path(args.videos) if args.videos else Path(tmp) / "videos"
        if not args.videos:
            write_videos(videos, count=args.num_videos, frames=48, size=96)
        table = {name: measure(name, videos, args.steps, args.workers, args.threads, args.precision)
                 for name in args.configs}
    print(f"{'config':<10} {'samples/s':>10} {'tokens/s':>10} {'data share':>11}")
    for name, row in table.items():
        print(f"{name:<10} {row['samples_per_s']:>10.1f} {row['tokens_per_s']:>10.0f} {row['data_fraction']:>10.1%}")
    load_end = [round(x, 2) for x in os.getloadavg()]
    print(f"load average (1, 5, 15 min) on {os.cpu_count()} cores: {load_start} at start, {load_end} at end")
    out = {"configs": table, "workers": args.workers, "precision": args.precision,
           "threads": args.threads, "cpus": os.cpu_count(), "load_average_start": load_start,
           "load_average_end": load_end,
           "videos": f"{args.num_videos} synthetic mp4 96x96, 48 frames" if not args.videos else str(args.videos)}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
