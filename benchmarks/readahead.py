"""Does the reader thread help (or hurt) ``cwm flow``'s video stream? Pairs/s with and without it.

Streams the first ``--pairs`` pairs of a video through the predictor's flow probe exactly as
``cwm flow`` does (:func:`cwm.cli.flow._stream_pairs`), once decoding in line and once with
:func:`cwm.cli.readahead.readahead` decoding ahead in a thread, alternating ``--repeats`` times
(the best run of each counts), and times the decoding alone. The machine's load is recorded.

    python benchmarks/readahead.py --device cpu --out readahead.json
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pairs_per_second(predictor, video: Path, pairs: int, ahead: bool) -> float:
    from cwm.cli.flow import _stream_pairs
    from cwm.cli.readahead import readahead
    from cwm.io import open_video

    with open_video(video) as reader:
        stream = itertools.islice(_stream_pairs(reader, 1, 1, None), pairs)
        stream = readahead(stream, 2) if ahead else stream
        start, count = time.perf_counter(), 0
        for _, f0, f1 in stream:
            predictor.flow(f0, f1)
            count += 1
    return count / (time.perf_counter() - start)


def decode_seconds(video: Path, pairs: int) -> float:
    from cwm.io import open_video

    start = time.perf_counter()
    with open_video(video) as reader:
        for _ in itertools.islice(reader.iter_frames(), pairs + 1):
            pass
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    import cwm

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video", type=Path, default=ROOT / "demos" / "assets" / "sample.mp4")
    p.add_argument("--pairs", type=int, default=4)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--weights", default="default")
    p.add_argument("--device", default=None)
    p.add_argument("--out", type=Path, default=None, help="write the numbers as JSON here")
    args = p.parse_args(argv)
    predictor = cwm.load(args.weights, device=args.device)
    pairs_per_second(predictor, args.video, 1, False)  # warm-up
    runs: dict[str, list[float]] = {"inline": [], "readahead": []}
    for _ in range(args.repeats):
        for name in runs:
            runs[name].append(pairs_per_second(predictor, args.video, args.pairs, name == "readahead"))
    report = {"device": str(predictor.device), "video": str(args.video), "pairs": args.pairs,
              "decode_s": round(decode_seconds(args.video, args.pairs), 4),
              "pairs_per_s": {k: round(max(v), 3) for k, v in runs.items()},
              "all_runs": {k: [round(x, 3) for x in v] for k, v in runs.items()},
              "load_avg": os.getloadavg(), "torch_threads": __import__("torch").get_num_threads()}
    report["readahead_over_inline"] = round(report["pairs_per_s"]["readahead"] / report["pairs_per_s"]["inline"], 3)
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
