"""Cost of Spelke segments: forward passes and JVPs per point-prompted segment and per automatic
segmentation, at 64 and 128 px, for the poke protocol and its Jacobian variant; and, with
--accuracy, which of the two is more accurate.

For each size (64: variant tiny_64, 128: small_128, random weights unless --weights names a
checkpoint of that size) one synthetic image is segmented:
  point/M       one point-prompted segment (the most interior pixel of an object), method M:
                poke (default read="counterfactual"), poke_reprobe (read="reprobe", the
                predict-then-flow-probe protocol) or jacobian, all at their default settings;
  auto/M        automatic segmentation with the model (with random weights the number of segments
                it keeps is arbitrary, so the cost is reported with the count);
  auto_oracle/M the same protocol on the rigid-objects oracle of the scene (probes.oracles_segments,
                patch size of the model), whose segment count is the scene's object count.
Counts are predictor items (batch entries) by kind, from ``SegmentResult.cost``: a "forward" is one
image through the model, a "JVP" one forward-mode tangent item. Forward equivalents weigh each
JVP item by the measured JVP/forward time per batched item (the flow engine's vmapped tangents
share one primal, so a JVP item can cost less than a forward); seconds are the best of --repeats
runs (wall and this process's CPU time) and also divided by one batch-1 forward.

With --accuracy, point-prompted IoU against the instance masks of the 20-scene quick synthetic
suite (cwm.evaluation, 64 and 128 px inputs, model size 64) for the rigid-objects oracle at patch 4
and patch 8 (a poke at any pixel of object k moves exactly object k), per method; with --weights,
also for that model (the embedded one: --weights default).

    python benchmarks/segment_speed.py --out benchmarks/results/segment_speed.json --accuracy
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))
from unit_costs import item_seconds  # noqa: E402

from cwm import metrics  # noqa: E402
from cwm.config import get_variant  # noqa: E402
from cwm.model import build_model  # noqa: E402
from cwm.predictor import CWMPredictor  # noqa: E402
from cwm.synthetic import make_scene  # noqa: E402
from probes.oracles_segments import RigidObjectsOracle  # noqa: E402
from probes.segments import segment  # noqa: E402

VARIANTS = {64: "tiny_64", 128: "small_128"}
SPEED_RUNS = {"poke": {"method": "poke"}, "poke_reprobe": {"method": "poke", "read": "reprobe"},
              "jacobian": {"method": "jacobian"}}
AUTO_RUNS = ("poke", "jacobian")
SPEED_SEED = 7
ACCURACY_PATCHES = (4, 8)
ACCURACY_MODEL_SIZE = (64, 64)
ACCURACY_RUNS = {"jacobian": {"method": "jacobian"}, "poke": {"method": "poke"},
                 "poke_reprobe": {"method": "poke", "read": "reprobe"},
                 "poke_fine": {"method": "poke", "magnitudes": (0.5,), "flow": {"stride": 2}}}
MODEL_ACCURACY_RUNS = ("jacobian", "poke")


def interior_points(instances: np.ndarray) -> tuple[list[int], list[tuple[int, int]]]:
    """Object ids present (background 0 left out) and the most interior pixel ``(x, y)`` of each."""
    from scipy.ndimage import distance_transform_edt

    ids = [int(i) for i in np.unique(instances) if i != 0]
    points = []
    for i in ids:
        y, x = np.unravel_index(np.argmax(distance_transform_edt(instances == i)), instances.shape)
        points.append((int(x), int(y)))
    return ids, points


def unit_costs(predictor, repeats: int = 5) -> dict:
    """Seconds of one batch-1 forward, and per item of batched forwards and (vmapped) JVPs."""
    s = item_seconds(predictor, masked=0.9, repeats=repeats)
    return {"forward_s": s["forward_s"], "forward_per_item_s": s["forward_batched_per_item_s"],
            "jvp_per_item_s": s["jvp_per_item_s"],
            "jvp_over_forward": s["jvp_per_item_s"] / s["forward_batched_per_item_s"]}


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def measure(fn, costs: dict, repeats: int) -> dict:
    """Best-of-``repeats`` seconds and the work counts of ``fn() -> SegmentResult``."""
    runs = [_timed(fn) for _ in range(repeats)]
    wall, cpu, res = min(runs, key=lambda r: r[0])
    c = res.cost
    return {"forwards": c["forwards"], "jvps": c["jvps"], "segments": len(res.masks),
            "forward_equivalents": c["forwards"] + c["jvps"] * costs["jvp_over_forward"],
            "seconds": wall, "cpu_seconds": cpu,
            "forward_equivalents_by_time": wall / costs["forward_s"]}


def speed(size: int, weights: str | None, repeats: int) -> dict:
    torch.manual_seed(0)
    predictor = (cwm_load(weights) if weights else CWMPredictor(build_model(get_variant(VARIANTS[size])),
                                                                  device="cpu"))
    scene = make_scene(SPEED_SEED, (size, size))
    image = scene.frames[0]
    _, points = interior_points(scene.instances[0])
    costs = unit_costs(predictor)
    oracle = RigidObjectsOracle(_resize_ids(scene.instances[0], predictor.size), patch_size=predictor.patch_size,
                                max_disp=2 * predictor.patch_size)
    rows = {}
    for name, kw in SPEED_RUNS.items():
        rows[f"point/{name}"] = measure(lambda kw=kw: segment(predictor, image, points[:1], **kw), costs, repeats)
    for name in AUTO_RUNS:
        kw = SPEED_RUNS[name]
        rows[f"auto/{name}"] = measure(lambda kw=kw: segment(predictor, image, **kw), costs, 1)
        oracle_row = measure(lambda kw=kw: segment(oracle, image, **kw), costs, 1)
        for key in ("seconds", "cpu_seconds", "forward_equivalents_by_time"):
            oracle_row.pop(key)
        rows[f"auto_oracle/{name}"] = oracle_row
    return {"variant": weights or VARIANTS[size], "patch_size": predictor.patch_size,
            "objects": len(points), "unit_costs": costs, "rows": rows}


def cwm_load(weights: str):
    import cwm

    return cwm.load(weights, device="cpu")


def _resize_ids(ids: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    return cv2.resize(ids.astype(np.int32), (size[1], size[0]), interpolation=cv2.INTER_NEAREST)


def accuracy(weights: str | None = None) -> dict:
    """Point-prompted IoU of each method on the quick suite: ``{"oracle_p4": {run: row}, ...}``.

    Prompts are the most interior pixel of each object (:func:`cwm.evaluation.prompt_points`);
    each mask is scored against its own object at the input's resolution.
    """
    import cv2

    from cwm.evaluation import default_suite, make_suite_scenes, prompt_points

    scenes = make_suite_scenes(default_suite(quick=True))
    predictors = {}
    for patch in ACCURACY_PATCHES:
        predictors[f"oracle_p{patch}"] = (
            lambda inst, patch=patch: RigidObjectsOracle(
                cv2.resize(inst.astype(np.int32), ACCURACY_MODEL_SIZE[::-1], interpolation=cv2.INTER_NEAREST),
                patch_size=patch, max_disp=2 * patch), ACCURACY_RUNS)
    if weights:
        model = cwm_load(weights)
        predictors[f"model_{weights}"] = (lambda inst: model, {k: ACCURACY_RUNS[k] for k in MODEL_ACCURACY_RUNS})
    report = {}
    for who, (make, runs) in predictors.items():
        report[who] = {}
        for name, kw in runs.items():
            ious, forwards, jvps, cpu = [], 0, 0, 0.0
            for scene in scenes:
                inst = scene.instances[0]
                ids, points = prompt_points(inst)
                if not len(ids):
                    continue
                predictor = make(inst)
                _, spent, res = _timed(functools.partial(segment, predictor, scene.frames[0], points, **kw))
                cpu += spent
                ious += [metrics.mask_iou(m, inst == i) for m, i in zip(res.masks, ids)]
                forwards, jvps = forwards + res.cost["forwards"], jvps + res.cost["jvps"]
            n = len(ious)
            report[who][name] = {"mean_iou": float(np.mean(ious)), "median_iou": float(np.median(ious)),
                                 "min_iou": float(np.min(ious)),
                                 "frac_iou_over_0.9": float(np.mean(np.asarray(ious) > 0.9)),
                                 "forwards_per_point": forwards / n, "jvps_per_point": jvps / n,
                                 "cpu_seconds": cpu, "num_points": n, "num_scenes": len(scenes)}
            print(f"accuracy {who} {name}: mean IoU {report[who][name]['mean_iou']:.3f}", flush=True)
    return report


def format_table(report: dict) -> str:
    lines = []
    for size, entry in report["speed"].items():
        u = entry["unit_costs"]
        lines += [(f"{size}x{size} ({entry['variant']}, patch {entry['patch_size']}): forward "
                   f"{u['forward_s'] * 1e3:.1f} ms, per batched item: forward {u['forward_per_item_s'] * 1e3:.1f} ms, "
                   f"JVP {u['jvp_per_item_s'] * 1e3:.1f} ms (JVP = {u['jvp_over_forward']:.2f} forwards); "
                   f"scene has {entry['objects']} objects"),
                  f"  {'run':<22}{'segments':>9}{'forwards':>10}{'JVPs':>8}{'fwd-equiv':>11}{'seconds':>9}"]
        for name, row in entry["rows"].items():
            secs = f"{row['seconds']:.2f}" if "seconds" in row else "-"
            lines.append(f"  {name:<22}{row['segments']:>9}{row['forwards']:>10}{row['jvps']:>8}"
                         f"{row['forward_equivalents']:>11.0f}{secs:>9}")
        lines.append("")
    for who, runs in report.get("accuracy", {}).items():
        first = next(iter(runs.values()))
        lines += [(f"accuracy, point prompts, {who}: {first['num_points']} objects of {first['num_scenes']} "
                   f"quick-suite scenes (model size {ACCURACY_MODEL_SIZE[0]})"),
                  (f"  {'method':<14}{'mean IoU':>9}{'median':>9}{'min IoU':>9}{'IoU>0.9':>9}{'fwd/pt':>8}"
                   f"{'JVP/pt':>8}{'cpu s':>8}")]
        for name, row in runs.items():
            lines.append(f"  {name:<14}{row['mean_iou']:>9.3f}{row['median_iou']:>9.3f}{row['min_iou']:>9.3f}"
                         f"{row['frac_iou_over_0.9']:>9.2f}{row['forwards_per_point']:>8.0f}"
                         f"{row['jvps_per_point']:>8.0f}{row['cpu_seconds']:>8.1f}")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="write the report as JSON to this file")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128], choices=sorted(VARIANTS))
    parser.add_argument("--weights", help="weights to time instead of random ones (one size only)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per point-prompted segment")
    parser.add_argument("--accuracy", action="store_true",
                        help="also compare the methods' IoU on the quick suite (rigid-objects oracle)")
    parser.add_argument("--accuracy-weights", metavar="NAME_OR_PATH",
                        help="with --accuracy, also score this model (e.g. 'default')")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    start = time.perf_counter()
    report = {"threads": torch.get_num_threads(),
              "speed": {str(s): speed(s, args.weights, args.repeats) for s in args.sizes}}
    print(format_table(report), flush=True)
    if args.accuracy:
        report["accuracy"] = accuracy(args.accuracy_weights)
    report["wall_seconds"] = time.perf_counter() - start
    if args.accuracy:
        print(format_table({"speed": {}, "accuracy": report["accuracy"]}))
    print(f"\nwall time {report['wall_seconds']:.1f} s")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
