"""Training-step throughput and MFU of one CWM shape on one device (default: ViT-B/8 2-frame at 224, bf16).

Times the pretraining step itself (the ``pretrain`` objective: temporally factored mask at the
given ratio, masked-patch MSE, backward, clipped AdamW step, all under bf16 autocast) on a fixed
random batch that already sits on the device, so the numbers are compute only (data loading is
measured by ``pretrain_speed.py``). FLOPs per step are counted once with
``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convolutions and attention, forward and
backward); MFU is achieved FLOP/s over ``--peak-tflops`` (default 989: the H100/H200 SXM dense
bf16 datasheet figure) and, as a second reference, over a bf16 8192^3 matmul measured in the same
run. Timing uses device events after warm-up; each row is the median of ``--repeats`` timed
windows of ``--steps`` steps.

    python benchmarks/gpu_step.py --out gpu_step.json                     # on a GPU
    python benchmarks/gpu_step.py --variant tiny_64 --batch 8 --steps 3 --out t.json   # smoke test, CPU

JSON: ``{"device": ..., "variant": ..., "rows": [{"batch": b, "compile": c, "step_ms": t,
"samples_per_s": s, "tflops": f, "mfu": m, "mfu_vs_matmul": m2}], "matmul_tflops": x}``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cwm.config import get_variant  # noqa: E402
from cwm.model import build_model  # noqa: E402
from pretrain.objective import mask_from_noise, masked_mse, masked_targets  # noqa: E402
from pretrain.train import param_groups  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timer(device: torch.device):
    """A function that runs ``fn`` and returns its wall time in ms (device events on CUDA)."""
    def run(fn) -> float:
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end)
        t = time.perf_counter()
        fn()
        return (time.perf_counter() - t) * 1e3
    return run


def matmul_tflops(device: torch.device, n: int = 8192, reps: int = 10) -> float:
    """Measured bf16 matmul rate on random data (the practical ceiling)."""
    if device.type != "cuda":
        return float("nan")
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    ms = _timer(device)(lambda: [a @ b for _ in range(reps)]) / reps
    return 2 * n**3 / (ms * 1e-3) / 1e12


def make_step(cfg, batch: int, ratio: float, device: torch.device, precision: str, compile_: bool = False):
    """A closure that runs one optimizer step of a model built from ``cfg`` (a :class:`CWMConfig`
    or a variant name), the model (for FLOP counting), and the step's inputs."""
    cfg = get_variant(cfg) if isinstance(cfg, str) else cfg
    model = build_model(cfg).to(device).train()
    opt = torch.optim.AdamW(param_groups(model, 0.05), lr=1e-4, betas=(0.9, 0.95),
                            fused=device.type == "cuda")
    h, w = cfg.img_size
    g = torch.Generator(device="cpu").manual_seed(0)
    rgb = torch.rand(batch, 3, cfg.num_frames, h, w, generator=g).to(device)
    mean = torch.tensor(cfg.mean, device=device).view(1, 3, 1, 1, 1)
    std = torch.tensor(cfg.std, device=device).view(1, 3, 1, 1, 1)
    x = (rgb - mean) / std
    mask = mask_from_noise(torch.rand(batch, cfg.grid[0] * cfg.grid[1], generator=g).to(device), cfg.num_frames, ratio)
    target = masked_targets(rgb[:, :, -1], mask, cfg.patch_size)
    fwd = torch.compile(model) if compile_ else model
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else contextlib.nullcontext

    def step() -> None:
        with autocast():
            loss = masked_mse(fwd(x, mask), target)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step, model, (x, mask, target, autocast)


def count_flops(model, inputs) -> float:
    """FLOPs of one forward+backward (matmul/conv/attention), counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    x, mask, target, autocast = inputs
    counter = FlopCounterMode(display=False)
    with counter:
        with autocast():
            loss = masked_mse(model(x, mask), target)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def measure(args, device: torch.device, batch: int, compile_: bool, peak: float, mm: float) -> dict:
    step, model, inputs = make_step(args.variant, batch, args.mask_ratio, device, args.precision, compile_)
    flops = count_flops(model, inputs)
    for _ in range(args.warmup):
        step()
    _sync(device)
    timer = _timer(device)
    windows = [timer(lambda: [step() for _ in range(args.steps)]) / args.steps for _ in range(args.repeats)]
    ms = statistics.median(windows)
    tflops = flops / (ms * 1e-3) / 1e12
    row = {"batch": batch, "compile": compile_, "step_ms": round(ms, 3), "samples_per_s": round(batch / ms * 1e3, 1),
           "flops_per_step": flops, "tflops": round(tflops, 2), "mfu": round(tflops / peak, 4),
           "mfu_vs_matmul": round(tflops / mm, 4) if mm == mm else None,
           "spread_ms": [round(min(windows), 3), round(max(windows), 3)]}
    if device.type == "cuda":
        row["peak_mem_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        torch.cuda.reset_peak_memory_stats(device)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="write the table here as JSON")
    p.add_argument("--variant", default="eccv2024_2frame_b8")
    p.add_argument("--batch", type=int, nargs="+", default=[32, 64, 128])
    p.add_argument("--mask-ratio", type=float, default=0.99)
    p.add_argument("--precision", default="bf16", choices=["bf16", "fp16", "no"])
    p.add_argument("--compile", action="store_true", help="also time torch.compile at the largest batch")
    p.add_argument("--steps", type=int, default=10, help="steps per timed window")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--peak-tflops", type=float, default=989.0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = True
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    mm = matmul_tflops(device)
    rows = []
    for batch in args.batch:
        rows.append(measure(args, device, batch, False, args.peak_tflops, mm))
        print(json.dumps(rows[-1]), flush=True)
    if args.compile:
        rows.append(measure(args, device, max(args.batch), True, args.peak_tflops, mm))
        print(json.dumps(rows[-1]), flush=True)
    report = {"device": name, "variant": args.variant, "precision": args.precision, "mask_ratio": args.mask_ratio,
              "torch": torch.__version__, "peak_tflops": args.peak_tflops, "matmul_tflops": round(mm, 1),
              "date": time.strftime("%Y-%m-%d"), "rows": rows}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{name}, {args.variant}, {args.precision}, mask ratio {args.mask_ratio}; "
          f"bf16 matmul {mm:.0f} TFLOP/s measured, peak {args.peak_tflops:.0f}")
    print(f"{'batch':>5} {'compile':>7} {'step ms':>9} {'samples/s':>10} {'TFLOP/s':>8} {'MFU':>6} {'vs matmul':>9}")
    for r in rows:
        vs = f"{r['mfu_vs_matmul']:.1%}" if r["mfu_vs_matmul"] is not None else "-"
        print(f"{r['batch']:>5} {str(r['compile']):>7} {r['step_ms']:>9.2f} {r['samples_per_s']:>10.1f} "
              f"{r['tflops']:>8.1f} {r['mfu']:>6.1%} {vs:>9}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
