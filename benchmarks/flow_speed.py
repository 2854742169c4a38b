"""Speed, cost and accuracy of dense Jacobian flow: ECCV-style reverse passes, finite differences,
and the packed JVP probe, in one run on one machine with one set of weights.

For each size (64: variant tiny_64, 128: small_128, random weights unless --weights names a
checkpoint of that size) the three methods compute a dense patch-grid flow field of one
synthetic pair:
  (a) official_style     one reverse pass per target patch over 5 mask partitions (ECCV 2024);
  (b) finite_difference  one source per forward pass (one-sided, a base pass per mask), the
                         default masks of (c);
  (c) packed_fd          probes.flow.flow with its defaults (packed sources, central finite
                         differences: all +eps / -eps inputs in one batched forward call);
  (d) packed_jvp         for information: (c) in forward mode (``mode="jvp"``);
  (e) packed_jvp_1mask   for information: (d) with one frame-1 mask instead of two;
  (f) packed_jvp_wide    for information: (d) searching flows up to 0.12 of the side (the
                         suite's fastest motions) instead of the default 0.06, at more tangents.
Seconds are the best of --repeats interleaved runs (one run for (a), which takes minutes), as
wall time and as this process's CPU time (less sensitive to other jobs on the machine); the
forward-equivalents divide the wall time by that of one batch-1 forward pass in the same run. Peak memory is the largest resident-set
growth of one run in a fresh process. EPE comes from the analytic oracle (probes.oracles) on scenes
of the synthetic suite, since random weights give meaningless flow: (a) runs on the time-reversed
oracle, as the ECCV code reverses the frames; the others on the forward oracle.

    python benchmarks/flow_speed.py --out flow_speed.json
    python benchmarks/flow_speed.py --memory --out flow_memory.json   # ViT-B/8 at 224, peak RSS
    python benchmarks/flow_speed.py --official --out flow_official.json  # default path vs official
    python benchmarks/flow_speed.py --official --no-vitb --no-batching --repeats 7  # quick, ~2 min

``--official`` times ``predictor.flow`` with its defaults (multi-scale, verified) against the
official method in one run, with pass counts of both sides (see benchmarks/flow_official.py).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flow_baselines import official_style_flow  # noqa: E402

from cwm import metrics  # noqa: E402
from cwm.config import get_variant  # noqa: E402
from cwm.evaluation import default_suite  # noqa: E402
from cwm.masking import make_mask  # noqa: E402
from cwm.model import build_model, math_attention  # noqa: E402
from cwm.predictor import CWMPredictor  # noqa: E402
from cwm.synthetic import make_scene  # noqa: E402
from probes import oracles  # noqa: E402
from probes.flow import flow  # noqa: E402

VARIANTS = {64: "tiny_64", 128: "small_128"}
#: Largest flow the suite's fastest scenes need, as a fraction of the side (row packed_jvp_wide).
WIDE_MAX_FLOW_FRACTION = 0.12
#: probes.flow.flow options of each method but (a); max_flow is given as a fraction of the side.
FLOW_OPTIONS = {
    "finite_difference": {"mode": "fd", "fd_central": False, "pack": False},
    "packed_fd": {},
    "packed_jvp": {"mode": "jvp"},
    "packed_jvp_1mask": {"mode": "jvp", "num_masks": 1},
    "packed_jvp_wide": {"mode": "jvp", "max_flow": WIDE_MAX_FLOW_FRACTION},
}
METHODS = ("official_style", *FLOW_OPTIONS)
SPEED_SEED = 7          # the synthetic scene timed at each size
RSS_POLL_S = 0.002


def rss_mb() -> float:
    """Resident set size of this process, MB (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakRSS:
    """Largest resident-set growth (MB) while the block runs, sampled by a thread."""

    def __enter__(self):
        self.base = self.peak = rss_mb()
        self._run = True
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self):
        while self._run:
            self.peak = max(self.peak, rss_mb())
            time.sleep(RSS_POLL_S)

    def __exit__(self, *exc):
        self._run = False
        self._thread.join()
        self.peak = max(self.peak, rss_mb())
        self.growth = self.peak - self.base


def run_method(name: str, predictor, f0, f1):
    """Dense flow ``[H, W, 2]`` by one method (numpy uint8 frames in)."""
    if name == "official_style":
        return np.asarray(official_style_flow(predictor, f0, f1)[0])
    opts = dict(FLOW_OPTIONS[name])
    if "max_flow" in opts:
        opts["max_flow"] *= min(f0.shape[:2])
    return flow(predictor, f0, f1, **opts).flow


def pass_counts(name: str, predictor, size: int) -> dict:
    """Model passes one dense flow takes, by method (for the table)."""
    from probes.core import DEFAULT_MAX_FLOW_FRACTION, DEFAULT_NUM_MASKS
    from probes.packing import pack_grid

    gh, gw = predictor.grid
    if name == "official_style":
        return {"forward": 5, "reverse": 4 * gh * gw}  # every patch is a target in 4 of 5 masks
    fraction = FLOW_OPTIONS[name].get("max_flow", DEFAULT_MAX_FLOW_FRACTION)
    packs = pack_grid((gh, gw), predictor.patch_size, fraction * size).num_packs
    k = FLOW_OPTIONS[name].get("num_masks", DEFAULT_NUM_MASKS)
    if name == "finite_difference":
        return {"forward": k * (gh * gw + 1)}
    if name == "packed_fd":
        return {"forward": 2 * k * packs}  # central: +eps and -eps, batched into one call per chunk
    return {"jvp": k * packs}


def child_peak_memory(method: str, size: int, frames: tuple[np.ndarray, np.ndarray]) -> float:
    """Peak resident-set growth (MB) of one run of ``method``, in a fresh process (a warm
    process reuses freed memory, which would hide the peak). The frames go by file, so the
    child does no other work that could leave freed memory behind for the method to reuse."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pair.npz"
        np.savez(path, frame0=frames[0], frame1=frames[1])
        cmd = [sys.executable, __file__, "--child", method, "--child-pair", str(path), "--sizes", str(size),
               "--threads", str(torch.get_num_threads())]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_growth_mb"]


def child(method: str, size: int, pair: Path) -> None:
    """The body of :func:`child_peak_memory`: set up, run once, print the peak growth."""
    torch.manual_seed(0)
    predictor = CWMPredictor(build_model(get_variant(VARIANTS[size])), device="cpu")
    with np.load(pair) as data:
        f0, f1 = data["frame0"], data["frame1"]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with PeakRSS() as mem:
        run_method(method, predictor, f0, f1)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    exact = after - mem.base if after > before else 0.0  # the kernel's own peak, when it rose
    print(json.dumps({"peak_growth_mb": max(mem.growth, exact)}))


def unit_costs(predictor, repeats: int = 7) -> dict:
    """Seconds of one batch-1 forward, and per item of batched forwards, JVPs and reverse passes."""
    h, w = predictor.size
    x = torch.rand(1, 3, predictor.num_frames, h, w)
    mask = make_mask(1, predictor.num_frames, predictor.grid, 0.99, seed=0)
    n = 8

    def best(fn):
        fn()
        return min(_timed(fn) for _ in range(repeats))

    with torch.no_grad():
        fwd = best(lambda: predictor.predict_fn(x, mask))
        fwd_batched = best(lambda: predictor.predict_fn(x.repeat(n, 1, 1, 1, 1), mask.repeat(n, 1))) / n
    f = lambda v: predictor.predict_fn(v, mask)  # noqa: E731
    tangents = torch.randn(n, *x.shape)
    with math_attention():
        jvp = best(lambda: torch.func.vmap(lambda t: torch.func.jvp(f, (x,), (t,))[1])(tangents)) / n
        xr = x.clone().requires_grad_(True)
        out = f(xr)
        g = torch.randn_like(out)
        reverse = best(lambda: torch.autograd.grad(out, xr, g, retain_graph=True))
    return {"forward_s": fwd, "forward_batched_per_item_s": fwd_batched, "jvp_per_item_s": jvp,
            "reverse_pass_s": reverse, "jvp_over_forward": jvp / fwd, "reverse_over_forward": reverse / fwd}


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def speed(size: int, predictor, repeats: int) -> dict:
    """Seconds, forward-equivalents and peak memory of each method on one pair at ``size``."""
    scene = make_scene(SPEED_SEED, (size, size))
    f0, f1 = scene.pair(0)
    costs = unit_costs(predictor)
    rows = {m: {"runs": []} for m in METHODS}
    for r in range(repeats):  # interleaved, so a noisy neighbour slows every method alike
        for m in METHODS:
            if m == "official_style" and r > 0:
                continue  # minutes long: one run already averages over the neighbours' noise
            start, cpu = time.perf_counter(), time.process_time()
            run_method(m, predictor, f0, f1)
            rows[m]["runs"].append((time.perf_counter() - start, time.process_time() - cpu))
    for m, row in rows.items():
        row["peak_mem_mb"] = child_peak_memory(m, size, (f0, f1))
        row["seconds"] = min(s for s, _ in row["runs"])
        row["cpu_seconds"] = min(c for _, c in row["runs"])
        row["forward_equivalents"] = row["seconds"] / costs["forward_s"]
        row["passes"] = pass_counts(m, predictor, size)
        del row["runs"]
    return {"methods": rows, "unit_costs": costs}


def accuracy(size: int, num_scenes: int, patch_size: int, methods=METHODS) -> dict:
    """EPE (all / non-occluded) of each method with the exact oracle on suite scenes at ``size``."""
    entries = [e for e in default_suite(quick=False) if e.size == (size, size) and e.preset != "stereo"]
    step = max(1, len(entries) // num_scenes)
    scenes = [make_scene(e.seed, e.size, preset=e.preset) for e in entries[::step][:num_scenes]]
    per = {m: [] for m in methods}
    for scene in scenes:
        case = oracles.scene_case(scene, patch_size)
        reverse = oracles.reverse_oracle(case, patch_size)
        for m in methods:
            pred = run_method(m, reverse if m == "official_style" else case.oracle, case.frame0, case.frame1)
            per[m].append(metrics.flow_metrics(pred, case.flow, case.occlusion))
    return {m: {"epe": float(np.mean([r["epe"] for r in rs])), "epe_noc": float(np.nanmean([r["epe_noc"] for r in rs])),
                "scenes": len(rs)} for m, rs in per.items()}


def memory(chunks: int) -> dict:
    """Peak memory of dense flow at 224 x 224 with the ViT-B/8 shape (random weights).

    Runs the first ``chunks`` engine calls of the default dense flow (each holds at most the
    automatic chunk of tangent items; later calls reuse the same memory) and reports the peak
    resident set, the time per call and the projected time of the whole field.
    """
    from probes.core import DEFAULT_MAX_FLOW_FRACTION, ProbeOptions, probe
    from probes.jacobian import auto_chunk_size
    from probes.packing import Packing, grid_sources, pack_grid

    torch.manual_seed(0)
    predictor = CWMPredictor(build_model(get_variant("eccv2024_2frame_b8")), device="cpu")
    scene = make_scene(SPEED_SEED, (224, 224))
    f0, f1 = (torch.from_numpy(f).permute(2, 0, 1)[None].float() / 255 for f in scene.pair(0))
    opts = ProbeOptions()
    full = pack_grid(predictor.grid, predictor.patch_size, DEFAULT_MAX_FLOW_FRACTION * 224)
    chunk = auto_chunk_size(predictor)
    per_call = max(1, chunk // opts.num_masks)
    keep = np.isin(full.pack, np.arange(per_call * chunks))
    part = Packing(full.sources[keep], full.pack[keep], per_call * chunks, full.max_flow)
    base = rss_mb()
    with PeakRSS() as mem:
        start = time.perf_counter()
        probe(predictor, f0, f1, part, opts)
        seconds = time.perf_counter() - start
    calls = -(-full.num_packs // per_call)
    return {"variant": "eccv2024_2frame_b8", "size": 224, "sources": len(grid_sources((224, 224), 8)[0]),
            "packs": full.num_packs, "num_masks": opts.num_masks, "chunk_items": chunk,
            "engine_calls_run": chunks, "engine_calls_full": calls, "seconds": seconds,
            "projected_full_seconds": seconds / chunks * calls, "rss_before_mb": base,
            "peak_rss_mb": mem.peak, "peak_growth_mb": mem.growth}


def format_table(report: dict) -> str:
    header = (f"{'size':>5} {'method':<18} {'wall s':>8} {'cpu s':>8} {'fwd-eq':>8} {'vs (a)':>7} "
              f"{'cpu vs (a)':>10} {'EPE':>6} {'EPE-noc':>7} {'peak MB':>8}  passes")
    lines = [header]
    for size, row in report["sizes"].items():
        base, base_cpu = row["official_style"]["seconds"], row["official_style"]["cpu_seconds"]
        for m in METHODS:
            r = row[m]
            lines.append(f"{size:>5} {m:<18} {r['seconds']:8.3f} {r['cpu_seconds']:8.3f} "
                         f"{r['forward_equivalents']:8.1f} {base / r['seconds']:6.1f}x "
                         f"{base_cpu / r['cpu_seconds']:9.1f}x {r['epe']:6.3f} {r['epe_noc']:7.3f} "
                         f"{r['peak_mem_mb']:8.1f}  {r['passes']}")
    for size, c in report["unit_costs"].items():
        lines.append(f"unit costs at {size}: forward {c['forward_s'] * 1e3:.1f} ms, JVP/item "
                     f"{c['jvp_over_forward']:.2f} fwd, reverse pass {c['reverse_over_forward']:.2f} fwd, "
                     f"batched forward/item {c['forward_batched_per_item_s'] / c['forward_s']:.2f} fwd")
    lines.append(f"EPE: {report['epe_source']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128], choices=sorted(VARIANTS))
    parser.add_argument("--repeats", type=int, default=2, help="interleaved timing runs (best is kept)")
    parser.add_argument("--scenes", type=int, default=4, help="synthetic scenes per size for EPE")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: steadiest on a shared machine)")
    parser.add_argument("--memory", action="store_true", help="measure dense flow at 224 with ViT-B/8")
    parser.add_argument("--memory-chunks", type=int, default=2, help="engine calls run by --memory")
    parser.add_argument("--official", action="store_true",
                        help="the default flow path against the official method (flow_official.py)")
    parser.add_argument("--no-vitb", action="store_true", help="--official without the ViT-B/8 224 row")
    parser.add_argument("--no-batching", action="store_true",
                        help="--official without the jvp vmap/batch comparison")
    parser.add_argument("--out", type=Path, help="write the report as JSON")
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)  # memory probe process
    parser.add_argument("--child-pair", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.child:
        child(args.child, args.sizes[0], args.child_pair)
        return 0
    machine = {"cpu": platform.processor() or platform.machine(), "threads": args.threads,
               "torch": torch.__version__}
    if args.official:
        import flow_official

        report = flow_official.run(args.repeats, not args.no_vitb,
                                   lambda size, methods: accuracy(size, args.scenes, 8, methods),
                                   batching=not args.no_batching)
        report["machine"] = {**machine, "load_average": os.getloadavg(),
                             "utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}
        print(flow_official.format_report(report))
    elif args.memory:
        report = {"memory": memory(args.memory_chunks), "machine": machine}
        print(json.dumps(report["memory"], indent=2))
    else:
        report = {"sizes": {}, "unit_costs": {}, "machine": machine,
                  "epe_source": "analytic WarpOracle (probes.oracles) on synthetic-suite ground truth; "
                                "timing with random-weight ViTs"}
        for size in args.sizes:
            torch.manual_seed(0)
            predictor = CWMPredictor(build_model(get_variant(VARIANTS[size])), device="cpu")
            timing = speed(size, predictor, args.repeats)
            acc = accuracy(size, args.scenes, predictor.patch_size)
            report["unit_costs"][str(size)] = timing["unit_costs"]
            report["sizes"][str(size)] = {m: {**timing["methods"][m], **acc[m]} for m in METHODS}
        print(format_table(report))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
