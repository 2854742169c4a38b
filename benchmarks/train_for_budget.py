"""Pretrain for a wall-clock budget: measure the step rate, then set ``train.max_steps``.

The cosine schedule needs the step count up front, so this script first measures two rates:
the configured DataLoader's (batches read for ``--probe`` seconds after the workers' start-up)
and the model's (optimizer steps on a random batch on the training device, as in
``gpu_step.py``). It takes the steps that fit in ``--minutes`` at the slower of the two (times
``--safety``) and runs the normal loop (:func:`pretrain.train.train`) with that step count.

    python benchmarks/train_for_budget.py --config pretrain/configs/embedded_tiny64_gpu.yaml \\
        --output-dir runs/default_gpu --minutes 5.5
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from gpu_step import make_step  # noqa: E402  (benchmarks/gpu_step.py, beside this file)

from pretrain.config import resolve  # noqa: E402
from pretrain.data import build_data  # noqa: E402
from pretrain.train import _dataloader, resolve_precision, train  # noqa: E402


def data_rate(cfg, seconds: float) -> float:
    """Clips per second that the configured loader delivers (one process), after start-up."""
    bundle = build_data(cfg, cfg.model_config(), cfg.train.batch_size)
    loader = _dataloader(cfg, bundle, pin=False)
    bundle.sampler.set_epoch(10_000)  # an epoch the run itself will not reach: no shared cache
    it = iter(loader)
    next(it)
    start, clips = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        clips += next(it)["video"].shape[0]
    rate = clips / (time.perf_counter() - start)
    del it, loader
    return rate


def compute_rate(cfg, steps: int = 20) -> float:
    """Clips per second of optimizer steps alone (random batch already on the device)."""
    t = cfg.train
    device = torch.device("cuda" if torch.cuda.is_available() and not t.cpu else "cpu")
    lo, hi = cfg.mask_range()
    step, model, _ = make_step(cfg.model_config(), t.batch_size * t.grad_accum, (lo + hi) / 2, device,
                               resolve_precision(t.mixed_precision, t.cpu))
    for _ in range(3):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    rate = steps * t.batch_size * t.grad_accum / (time.perf_counter() - start)
    del step, model
    return rate


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--output-dir", required=True)
    p.add_argument("--minutes", type=float, required=True, help="training wall-clock budget")
    p.add_argument("--probe", type=float, default=20.0, help="seconds to measure the data rate")
    p.add_argument("--safety", type=float, default=0.85, help="fraction of the budget to plan for")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)
    cfg = resolve(args.config, [*args.overrides, f"train.output_dir={args.output_dir}"])
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    data, compute = data_rate(cfg, args.probe), compute_rate(cfg)
    unit = cfg.train.batch_size * cfg.train.grad_accum
    steps = max(1, int(min(data, compute) * args.minutes * 60 * args.safety / unit))
    cfg.train.max_steps = steps
    print(json.dumps({"data_clips_per_s": round(data, 1), "compute_clips_per_s": round(compute, 1),
                      "max_steps": steps, "batch": unit,
                      "device": "cuda" if torch.cuda.is_available() else "cpu"}), flush=True)
    t0 = time.time()
    result = train(cfg.validate())
    print(json.dumps({"steps": result.step, "wall_s": round(time.time() - t0, 1),
                      "samples_per_s": round(result.samples_per_s, 1), "data_fraction": round(result.data_fraction, 3),
                      "eval": result.eval, "export": result.export_dir}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
