"""How the flow probe's defaults were chosen: sweeps on the synthetic suite.

- ``--what occlusion``: the occlusion threshold, with the exact oracle of each scene
  (probes.oracles.scene_case): pooled occlusion F1 per threshold, for per-pixel sources and for
  the default patch-grid sources, searching the suite's whole motion range (max_flow 0.12 of the
  side) so that the threshold separates occluded from visible responses, not aliased ones.
- ``--what masks --weights NAME_OR_PATH``: EPE of a trained model for numbers of frame-1 masks
  and visible fractions (random weights make this meaningless, so weights are required).

    python benchmarks/flow_tune.py --what occlusion --out flow_tune_occlusion.json
    python benchmarks/flow_tune.py --what masks --weights default --out flow_tune_masks.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from cwm import metrics
from cwm.evaluation import default_suite, make_suite_scenes
from probes import oracles
from probes.core import ProbeOptions, grid_probe
from probes.flow import flow

THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
NUM_MASKS = (1, 2, 4)
SUITE_MAX_FLOW_FRACTION = 0.12  # the suite's fastest motions, per axis, as a fraction of the side
VISIBLE = (0.01, 0.05, 0.1, 0.25)


def _leaves(flow: torch.Tensor) -> torch.Tensor:
    h, w = flow.shape[1:3]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=flow.dtype), torch.arange(w, dtype=flow.dtype), indexing="ij")
    ex, ey = xs + flow[..., 0], ys + flow[..., 1]
    return (ex < -0.5) | (ex >= w - 0.5) | (ey < -0.5) | (ey >= h - 0.5)


def tune_occlusion(scenes, strides=(1, 8)) -> dict:
    """Pooled occlusion precision/recall/F1 per threshold and stride, oracle predictor (jvp)."""
    out = {}
    for stride in strides:
        counts = {t: np.zeros(3, np.int64) for t in THRESHOLDS}
        for scene in scenes:
            case = oracles.scene_case(scene)
            f0, f1 = (torch.from_numpy(f).permute(2, 0, 1)[None].float() / 255 for f in scene.pair(0))
            max_flow = SUITE_MAX_FLOW_FRACTION * min(scene.size)
            opts = ProbeOptions(stride=stride, max_flow=max_flow).resolve(case.oracle, tuple(case.oracle.size))
            fwd, score = grid_probe(case.oracle, f0, f1, opts, "jvp")
            leaves = _leaves(fwd)[0].numpy()
            for t in THRESHOLDS:
                pred = (score[0].numpy() < t) | leaves
                counts[t] += metrics.confusion_counts(pred, scene.occlusion[0])
        out[f"stride_{stride}"] = {str(t): metrics.precision_recall_f1(*map(int, c)) for t, c in counts.items()}
    return out


def tune_masks(scenes, weights: str) -> dict:
    """EPE (all / noc) of a trained model per (num_masks, visible), and seconds per pair."""
    import cwm

    predictor = cwm.load(weights, device="cpu")
    out = {}
    for k in NUM_MASKS:
        for v in VISIBLE:
            rows, start = [], time.perf_counter()
            for scene in scenes:
                res = flow(predictor, *scene.pair(0), num_masks=k, visible=v)
                rows.append(metrics.flow_metrics(res.flow, scene.flow[0], scene.occlusion[0]))
            out[f"K={k} visible={v}"] = {**metrics.mean_metrics(rows),
                                         "seconds_per_pair": (time.perf_counter() - start) / len(scenes)}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--what", choices=("occlusion", "masks"), default="occlusion")
    parser.add_argument("--weights", help="trained weights for --what masks (cwm.load name or path)")
    parser.add_argument("--full", action="store_true", help="the full 100-scene suite (default: quick, 20)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    scenes = make_suite_scenes(default_suite(quick=not args.full))
    if args.what == "masks":
        if not args.weights:
            parser.error("--what masks needs --weights (random weights give meaningless flow)")
        report = {"masks": tune_masks(scenes, args.weights), "weights": args.weights}
        for name, row in report["masks"].items():
            print(f"{name:<22} EPE {row['epe']:.3f}  EPE-noc {row['epe_noc']:.3f}  {row['seconds_per_pair']:.2f} s/pair")
    else:
        report = {"occlusion": tune_occlusion(scenes)}
        for stride, rows in report["occlusion"].items():
            best = max(rows, key=lambda t: rows[t]["f1"])
            print(stride, "  ".join(f"{t}:{r['f1']:.3f}" for t, r in rows.items()), f"  best {best}")
    report["scenes"] = len(scenes)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
