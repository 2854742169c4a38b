"""Folder throughput of ``cwm flow DIR``: pairs/s for 1 and 2 processes, batch 1 and 8, and decoding.

Writes a folder of small mp4 clips (synthetic scenes, :func:`cwm.synthetic.make_scene`), then runs
``python -m cwm flow DIR`` (one process) and ``accelerate launch --multi_gpu --num_processes 2 -m
cwm flow DIR`` (two processes; gloo on a host without a GPU), each as a fresh subprocess, and reads
pairs/s from the run's manifest (pairs over the wall time from the folder's listing to the last
video's end, model loading included). Decoding is timed apart: every clip decoded once, as the
runs decode them.

    python benchmarks/folder_throughput.py --out folder_throughput.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def write_clips(folder: Path, count: int, frames: int, size: int) -> None:
    from cwm.io import write_video
    from cwm.synthetic import make_scene

    for i in range(count):
        sub = folder / (f"part{i % 2}")  # a nested layout, as a dataset has
        sub.mkdir(parents=True, exist_ok=True)
        write_video(sub / f"clip_{i:03d}.mp4", make_scene(i, (size, size), num_frames=frames + i % 3).frames, fps=10)


def decode_seconds(folder: Path) -> tuple[float, int]:
    from cwm.io import open_video

    start, count = time.perf_counter(), 0
    for path in sorted(folder.rglob("*.mp4")):
        with open_video(path) as reader:
            count += sum(1 for _ in reader.iter_frames())
    return time.perf_counter() - start, count


def run(clips: Path, out: Path, processes: int, batch: int, device: str, weights: str, threads: int) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": str(threads)}
    if processes > 1:
        launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                  str(processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    else:
        launch = [sys.executable]
    cmd = [*launch, "-m", "cwm", "flow", str(clips), "-o", str(out), "--format", "raw", "--batch", str(batch),
           "--weights", weights, "-q"] + (["--device", device] if device else [])
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"run failed ({processes} processes, batch {batch}): {proc.stderr[-1500:]}")
    summary = json.loads((out / "manifest.json").read_text())["summary"]
    return {"processes": processes, "batch": batch, "pairs": summary["pairs"], "seconds": summary["seconds"],
            "pairs_per_s": summary["pairs_per_s"], "wall_s_with_startup": round(wall, 2)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="write the results here as JSON")
    p.add_argument("--clips", type=int, default=6)
    p.add_argument("--frames", type=int, default=9, help="frames of the shortest clip (others have 1-2 more)")
    p.add_argument("--size", type=int, default=64, help="clip side in pixels")
    p.add_argument("--weights", default="default")
    p.add_argument("--device", default="", help="cpu, cuda (default: the CLI's)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per process (default 1: N processes use N cores; more threads than "
                        "free cores on a loaded machine makes torch's thread pool spin, 20x slower here)")
    p.add_argument("--runs", nargs="+", default=["1x1", "2x1", "1x8"],
                   help="PROCESSESxBATCH runs (default: 1x1 2x1 1x8)")
    args = p.parse_args(argv)
    load_start = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        clips = Path(tmp) / "clips"
        write_clips(clips, args.clips, args.frames, args.size)
        decode_s, decoded = decode_seconds(clips)
        rows = []
        for spec in args.runs:
            n, k = (int(v) for v in spec.split("x"))
            rows.append(run(clips, Path(tmp) / f"out_{spec}", n, k, args.device, args.weights, args.threads))
            print(f"  {n} process(es), batch {k}: {rows[-1]['pairs_per_s']:.2f} pairs/s", file=sys.stderr)
    load_end = [round(x, 2) for x in os.getloadavg()]
    base = rows[0]["pairs_per_s"]
    print(f"{'processes':>9} {'batch':>5} {'pairs':>5} {'seconds':>8} {'pairs/s':>8} {'vs first':>8}")
    for r in rows:
        print(f"{r['processes']:>9} {r['batch']:>5} {r['pairs']:>5} {r['seconds']:>8.2f} {r['pairs_per_s']:>8.2f} "
              f"{r['pairs_per_s'] / base if base else 0:>7.2f}x")
    first = rows[0]
    print(f"decoding all {decoded} frames once: {decode_s:.3f} s ({decode_s / first['seconds']:.1%} of the "
          f"first run's {first['seconds']:.1f} s)")
    print(f"load average (1, 5, 15 min) on {os.cpu_count()} cores: {load_start} at start, {load_end} at end")
    result = {"runs": rows, "decode_seconds": round(decode_s, 4), "frames_decoded": decoded,
              "decode_share_of_first_run": round(decode_s / first["seconds"], 4),
              "clips": f"{args.clips} synthetic mp4 {args.size}x{args.size}, {args.frames}-{args.frames + 2} frames",
              "weights": args.weights, "threads_per_process": args.threads, "device": args.device or "default", "cpus": os.cpu_count(),
              "load_average_start": load_start, "load_average_end": load_end}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
