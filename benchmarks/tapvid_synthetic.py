"""Write the synthetic TAP-Vid set (exact tracks, DAVIS pickle layout) that ``cwm eval tapvid`` scores.

    python -m benchmarks.tapvid_synthetic --out /tmp/tapvid_synthetic.pkl      # 20 clips, 16 frames, 64 px
    cwm eval tapvid --data /tmp/tapvid_synthetic.pkl --out benchmarks/results/tapvid_synthetic.json

The set is deterministic (``cwm.synthetic.make_tapvid_set``), so it is regenerated rather than
committed. Prints one line with the file written and its contents.
"""
from __future__ import annotations

import argparse
import pickle
from pathlib import Path


def main(argv=None) -> int:
    from cwm.atomic import atomic_write
    from cwm.synthetic import make_tapvid_set

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="the .pkl to write")
    p.add_argument("--videos", type=int, default=20)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=64, help="frame side in pixels")
    p.add_argument("--points", type=int, default=32, help="tracks per video")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    data = make_tapvid_set(args.videos, size=(args.size, args.size), num_frames=args.frames,
                           num_points=args.points, seed=args.seed)
    with atomic_write(args.out, overwrite=args.overwrite) as tmp:
        tmp.write_bytes(pickle.dumps(data, protocol=4))
    print(f"{args.out}: {len(data)} videos x {args.frames} frames at {args.size}x{args.size}, "
          f"{args.points} tracks each")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
