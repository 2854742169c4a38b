"""Dense flow time at 224 with the ViT-B/8 shape (random weights: time, not accuracy).

Builds ``--variant`` (default ``eccv2024_2frame_b8``) with random weights, loads it as a predictor
on ``--device`` and times :func:`probes.flow.flow` (its defaults) on one synthetic ``--size`` pair:
the best and median of ``--repeats`` calls after one warm-up call. Used by
``benchmarks/device_session.sh`` on a GPU; on a CPU ``--variant tiny_64 --size 64`` smoke-tests it.

    python benchmarks/flow_224.py --out flow_224.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--variant", default="eccv2024_2frame_b8")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    import cwm
    from cwm.checkpoints import save_pretrained
    from cwm.config import get_variant
    from cwm.model import build_model
    from cwm.synthetic import make_scene
    from probes.flow import flow

    torch.manual_seed(0)
    frames = make_scene(0, (args.size, args.size), num_frames=2).frames
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(build_model(get_variant(args.variant)), Path(tmp) / "w")
        predictor = cwm.load(str(Path(tmp) / "w"), device=args.device)

    def once() -> float:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        flow(predictor, frames[0], frames[1])
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - t

    warm = once()
    times = [once() for _ in range(args.repeats)]
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    out = {"device": name, "variant": args.variant, "size": args.size, "first_call_s": round(warm, 3),
           "best_s": round(min(times), 3), "median_s": round(statistics.median(times), 3), "repeats": args.repeats,
           "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}
    if args.device.startswith("cuda"):
        out["peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
