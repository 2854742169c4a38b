"""Memory of ``cwm flow`` on long videos: peak RSS at 100, 1,000 and 5,000 frames.

For each length, a 128x128 video of a moving texture is written as mp4 (frames generated and
encoded one at a time), then ``cwm flow VIDEO --every K`` runs in a fresh process with the
embedded default model, with ``K`` chosen so that every length processes the same number of pairs
(``--pairs``, 10 by default). The child's peak resident set size comes from ``os.wait4``
(``ru_maxrss`` of that process alone). The command streams frames, so the peak should not grow
with the video's length. Target: peak RSS at 5,000 frames <= 1.2x the peak at 100.

    python benchmarks/memory.py --out benchmarks/results/memory.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np

TARGET_RATIO = 1.2


def moving_texture(num_frames: int, size: int, seed: int = 0) -> Iterator[np.ndarray]:
    """``[size, size, 3]`` uint8 frames of a smooth random texture translating by (1, 0.5) px per
    frame (wrapping around), generated one at a time."""
    import cv2

    rng = np.random.default_rng(seed)
    period = 2 * size
    texture = rng.integers(0, 256, (period, period, 3), dtype=np.uint8)
    texture = cv2.GaussianBlur(texture, (0, 0), 2.0, borderType=cv2.BORDER_WRAP)
    tiled = np.tile(texture, (2, 2, 1))
    for t in range(num_frames):
        x, y = t % period, (t // 2) % period
        yield np.ascontiguousarray(tiled[y:y + size, x:x + size])


def peak_rss_of(cmd: list[str], env: dict[str, str]) -> tuple[int, float, float, str]:
    """Run ``cmd``; return (exit status, peak RSS in MB of that process, seconds, stderr tail)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)  # the rusage of this child only
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
        err.seek(0)
        tail = err.read()[-2000:]
    return proc.returncode, usage.ru_maxrss / 1024, seconds, tail  # ru_maxrss is in KiB on Linux


def cwm_command() -> list[str]:
    exe = shutil.which("cwm")
    return [exe] if exe else [sys.executable, "-m", "cwm.cli.main"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="write the table here as JSON")
    p.add_argument("--frames", type=int, nargs="+", default=[100, 1000, 5000], help="video lengths")
    p.add_argument("--pairs", type=int, default=10, help="pairs processed per video (sets --every)")
    p.add_argument("--size", type=int, default=128,
                   help="frame side in pixels (128: 5,000 decoded frames would take 234 MB, so a reader "
                        "or a list that kept them all would miss the target)")
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the cwm process")
    args = p.parse_args(argv)

    from cwm.io import write_video

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    table: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.frames:
            video = Path(tmp) / f"texture_{n}.mp4"
            t0 = time.perf_counter()
            write_video(video, moving_texture(n, args.size), fps=30)
            written = time.perf_counter() - t0
            every = max(1, -(-(n - 1) // args.pairs))  # ceil: at most --pairs pairs
            pairs = len(range(0, n - 1, every))
            out = Path(tmp) / f"out_{n}"
            cmd = [*cwm_command(), "flow", str(video), "--every", str(every), "-o", str(out), "-q",
                   "--device", "cpu"]
            rc, rss, seconds, err = peak_rss_of(cmd, env)
            if rc != 0:
                print(f"error: `{' '.join(cmd)}` exited with {rc}:\n{err}", file=sys.stderr)
                return 1
            raw = len(list((out / "raw").glob("*.npy")))
            if raw != pairs:
                print(f"error: expected {pairs} raw flow files for {n} frames, found {raw}", file=sys.stderr)
                return 1
            table[str(n)] = {"peak_rss_mb": round(rss, 1), "seconds": round(seconds, 2), "pairs": pairs,
                             "all_frames_decoded_mb": round(n * args.size**2 * 3 / 2**20, 1),
                             "every": every, "video_mb": round(video.stat().st_size / 2**20, 3),
                             "write_seconds": round(written, 2)}
            shutil.rmtree(out)
            video.unlink()

    # What the process holds before it does anything: the torch import maps its (CUDA) libraries.
    _, torch_rss, _, _ = peak_rss_of([sys.executable, "-c", "import torch"], env)
    first, last = table[str(args.frames[0])], table[str(args.frames[-1])]
    ratio = last["peak_rss_mb"] / first["peak_rss_mb"]
    print(f"{'frames':>7} {'every':>6} {'pairs':>6} {'peak RSS MB':>12} {'seconds':>8}")
    for n, row in table.items():
        print(f"{n:>7} {row['every']:>6} {row['pairs']:>6} {row['peak_rss_mb']:>12.1f} {row['seconds']:>8.1f}")
    print(f"(`python -c 'import torch'` alone peaks at {torch_rss:.0f} MB)")
    verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
    print(f"peak RSS at {args.frames[-1]} frames / at {args.frames[0]}: {ratio:.3f} "
          f"(target <= {TARGET_RATIO}: {verdict})")
    result = {"frames": table, "ratio_last_to_first": round(ratio, 4), "target_ratio": TARGET_RATIO,
              "target_met": ratio <= TARGET_RATIO, "import_torch_peak_rss_mb": round(torch_rss, 1),
              "setup": {"size": args.size, "pairs": args.pairs, "threads": args.threads,
                        "command": "cwm flow VIDEO --every K -o DIR -q --device cpu (embedded model, mp4 + raw .npy)",
                        "video": "moving blurred-noise texture, H.264 mp4 via cwm.io.write_video",
                        "machine": platform.machine(), "load_average": [round(x, 2) for x in os.getloadavg()]}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
