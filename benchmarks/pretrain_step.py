"""``pretrain_speed.py --step``: the optimizer step, official style vs ours, and ViT-B/8 224 on this CPU."""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from step_reference import SHAPE, make_steps  # noqa: E402

#: H100/H200 SXM dense bf16 peak (datasheet), TFLOP/s.
PEAK_TFLOPS = 989.0
#: Assumed MFU range for the GPU estimate: what MAE-style ViT-B pretraining in bf16 with fused
#: attention commonly reaches on H100-class GPUs (an assumption, not a measurement).
ASSUMED_MFU = (0.35, 0.50)


def _window(step, n: int, cpu: bool = False) -> float:
    """ms per step over ``n`` steps: wall time, or this process's CPU time (``cpu``; with one
    thread, much less sensitive than wall time to other jobs taking the cores)."""
    clock = time.process_time if cpu else time.perf_counter
    t = clock()
    for _ in range(n):
        step()
    return (clock() - t) / n * 1e3


def compare(precision: str, rounds: int, steps: int, compile_: bool) -> dict:
    s = make_steps(SHAPE, batch=32, precision=precision, compile_=compile_)
    names = ["official", "ours"]
    for name in names:  # warm-up (and compilation)
        s[name](), s[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(rounds):
        for name in names:
            times[name].append(_window(s[name], steps, cpu=True))
    wall = {n: _window(s[n], steps) for n in names}
    losses = {n: s[n]() for n in names}
    ms = {n: statistics.median(t) for n, t in times.items()}
    return {"precision": precision, "compile": compile_, "official_ms": round(ms["official"], 1),
            "ours_ms": round(ms["ours"], 1), "speedup": round(ms["official"] / ms["ours"], 3),
            "clock": "process CPU time, median of alternating windows", "wall_ms_one_window":
            {n: round(v, 1) for n, v in wall.items()},
            "first_loss": round(s["first_loss"], 6), "loss_after": {n: round(v, 6) for n, v in losses.items()},
            "windows_ms": {n: [round(v, 1) for v in t] for n, t in times.items()}}


def vitb8_step() -> dict:
    from gpu_step import count_flops, make_step

    step, model, inputs = make_step("eccv2024_2frame_b8", 1, 0.99, torch.device("cpu"), "no")
    flops = count_flops(model, inputs)
    step()
    ms = min(_window(step, 1) for _ in range(2))
    per_sample = flops
    gpu = {f"mfu_{m:.2f}_step_ms_batch32": round(32 * per_sample / (m * PEAK_TFLOPS * 1e12) * 1e3, 1)
           for m in ASSUMED_MFU}
    return {"variant": "eccv2024_2frame_b8", "batch": 1, "mask_ratio": 0.99, "precision": "fp32 (CPU)",
            "cpu_step_ms": round(ms, 1), "flops_per_sample": per_sample,
            "cpu_tflops": round(per_sample / (ms * 1e-3) / 1e12, 4), "gpu_estimate": {
                "peak_tflops": PEAK_TFLOPS, "assumed_mfu": list(ASSUMED_MFU), **gpu,
                "note": "not measured: no GPU this session; benchmarks/device_session.sh measures it"}}


def run_step_benchmark(args) -> int:
    torch.set_num_threads(args.threads)
    load_start = [round(x, 2) for x in os.getloadavg()]
    precisions = args.precisions
    rows = [compare(p, args.rounds, max(1, args.steps // 10), False) for p in precisions if not args.compile_only]
    if args.compile:
        rows += [compare(p, args.rounds, max(1, args.steps // 10), True) for p in precisions]
    vit = vitb8_step() if not args.compile_only else None
    load_end = [round(x, 2) for x in os.getloadavg()]
    print(f"step of the 64 px shape, batch 32, {args.threads} thread(s), CPU ms per step (process time):")
    print(f"{'precision':<9} {'compile':>7} {'official ms':>11} {'ours ms':>8} {'speedup':>7}")
    for r in rows:
        print(f"{r['precision']:<9} {str(r['compile']):>7} {r['official_ms']:>11.1f} {r['ours_ms']:>8.1f} {r['speedup']:>6.2f}x")
    if vit is None:
        Path(args.out).write_text(json.dumps({"rows": rows, "threads": args.threads}, indent=2) + "\n")
        return 0
    print(f"ViT-B/8 224 (eccv2024_2frame_b8), batch 1, CPU fp32: {vit['cpu_step_ms']:.0f} ms/step, "
          f"{vit['flops_per_sample'] / 1e9:.0f} GFLOP/sample; GPU estimate at {ASSUMED_MFU} MFU: {vit['gpu_estimate']}")
    print(f"load average (1, 5, 15 min) on {os.cpu_count()} cores: {load_start} at start, {load_end} at end")
    out = {"shape": "encoder 192x6, decoder 128x2, 64 px, patch 8, 2 frames, batch 32, mask 0.9", "rows": rows,
           "vitb8_224": vit, "threads": args.threads, "cpus": os.cpu_count(), "torch": torch.__version__,
           "load_average_start": load_start, "load_average_end": load_end}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0
