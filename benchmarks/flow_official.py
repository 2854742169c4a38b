"""Our default flow path against the official ECCV method, in one run (``flow_speed.py --official``).

Rows, each timed in this one process so that both sides see the same machine load:
  * 64 px, ``tiny_64``: the official method (:func:`flow_baselines.official_style_flow`, 5 forward
    + 256 reverse passes) against ``predictor.flow`` with its defaults (one model-sized window and
    the photometric check; engine mode "fd": central finite differences, one batched forward
    call per chunk) and, beside it, the same path with ``mode="jvp"`` (forward mode);
  * 128 px input, ``tiny_64``: the official method runs at the model's size (it needs inputs at
    its image size: 5 + 256 passes); the default path is two pyramid levels, and the side
    ``model_size`` (``multiscale=False``) reads one model-sized window as the official does;
  * 128 px, ``small_128``: both at the model's size (official 5 + 1024 passes, ours one window);
  * 224 px, ViT-B/8 2-frame shape (random weights): projected from measured unit passes (a full
    official field is 5 forwards and 3136 reverse passes; ours is measured engine calls).
Passes of our side are counted while it runs: engine calls, and their items (forward items of the
batched finite-difference calls: tangents x pairs x masks x 2 for central differences; tangent
items of the JVP calls). One engine call's cost is fitted as ``fixed + per_tangent * n`` over
calls with ``n`` tangents on the default 2 masks, for "fd" and for both batchings of "jvp".
"""
from __future__ import annotations

import contextlib
import time

import numpy as np
import torch

from flow_baselines import OFFICIAL_PARTITIONS, official_style_flow

from cwm.config import get_variant
from cwm.masking import make_mask
from cwm.model import build_model, math_attention
from cwm.predictor import CWMPredictor
from cwm.synthetic import make_scene
from probes import jacobian
from probes.core import DEFAULT_MODE, ProbeOptions
from probes.flow import flow, window_flow

SEED = 7
#: (row name, variant, input side)
ROWS = (("64", "tiny_64", 64), ("128 (64-px model)", "tiny_64", 128), ("128", "small_128", 128))
TILE_BATCH = 49
#: Our sides timed against the official method: the defaults, and the defaults in forward mode.
OURS = {"default": {}, "jvp": {"mode": "jvp"}}
#: An extra side where the input is larger than the model: one model-sized window over the
#: resized input (no pyramid), the resolution the official method reads at.
MODEL_SIZE = {"model_size": {"multiscale": False}}


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def best(fn, repeats: int) -> float:
    fn()  # warm-up (lazy imports, first-call allocations)
    return min(_timed(fn) for _ in range(repeats))


@contextlib.contextmanager
def count_engine():
    """Count engine calls and items while the block runs: finite-difference calls and their
    forward items (a central call runs ``2 n B`` items for ``n`` tangents on ``B`` rows), JVP
    calls and their tangent items (``n B``)."""
    counts = {"fd_calls": 0, "fd_forward_items": 0, "jvp_calls": 0, "jvp_tangent_items": 0}
    real_jvp, real_fd = jacobian.jvp_chunk, jacobian.fd_chunk

    def counted_jvp(fn, primal, tangents, batching):
        counts["jvp_calls"] += 1
        counts["jvp_tangent_items"] += tangents.shape[0] * tangents.shape[1]
        return real_jvp(fn, primal, tangents, batching)

    def counted_fd(fn, primal, base, tangents, eps):
        counts["fd_calls"] += 1
        counts["fd_forward_items"] += tangents.shape[0] * tangents.shape[1] * (2 if base is None else 1)
        return real_fd(fn, primal, base, tangents, eps)

    jacobian.jvp_chunk, jacobian.fd_chunk = counted_jvp, counted_fd
    try:
        yield counts
    finally:
        jacobian.jvp_chunk, jacobian.fd_chunk = real_jvp, real_fd


def _nonzero(counts: dict) -> dict:
    return {k: v for k, v in counts.items() if v}


def predictor_of(variant: str) -> CWMPredictor:
    torch.manual_seed(0)
    return CWMPredictor(build_model(get_variant(variant)), device="cpu")


def forward_seconds(predictor, repeats: int = 5) -> float:
    x = torch.rand(1, 3, predictor.num_frames, *predictor.size)
    mask = make_mask(1, predictor.num_frames, predictor.grid, 0.75, seed=0)
    with torch.no_grad():
        return best(lambda: predictor.predict_fn(x, mask), repeats)


def engine_unit_costs(predictor, counts=(1, 2, 4, 8, 16), repeats: int = 3) -> dict:
    """Seconds of one engine call with ``n`` tangents on a batch of 2 (the default 2 masks): "fd"
    (central: one forward call of ``4 n`` items) and "jvp" with each batching; and the
    least-squares ``fixed + per_tangent * n`` fit of each."""
    h, w = predictor.size
    k = 2
    masks = jacobian.probe_masks(1, predictor.num_frames, predictor.grid, k, 0.25, 0)
    fn = jacobian.FrameFunction(predictor, torch.rand(k, 3, h, w), masks)
    primal = torch.rand(k, 3, h, w)
    calls = {
        "fd": lambda t: jacobian.fd_chunk(fn, primal, None, t, jacobian.DEFAULT_FD_EPS),
        "jvp vmap": lambda t: jacobian.jvp_chunk(fn, primal, t, "vmap"),
        "jvp batch": lambda t: jacobian.jvp_chunk(fn, primal, t, "batch"),
    }
    out = {}
    for name, call in calls.items():
        secs = []
        for n in counts:
            tangents = torch.randn(n, k, 3, h, w)
            secs.append(best(lambda call=call, tangents=tangents, name=name: _engine_call(name, call, tangents),
                             repeats))
        slope, fixed = np.polyfit(np.array(counts, float), np.array(secs), 1)
        out[name] = {"tangents": list(counts), "seconds": secs, "fixed_s": float(fixed),
                     "per_tangent_s": float(slope)}
    return out


def _engine_call(name: str, call, tangents: torch.Tensor) -> None:
    """One engine call as :func:`probes.jacobian.iter_responses` makes it: forward mode on the
    math attention backend, finite differences on the fused kernel, no autograd graph."""
    with (math_attention() if name.startswith("jvp") else contextlib.nullcontext()), torch.no_grad():
        call(tangents)


def batching_comparison(repeats: int) -> dict:
    """Forward-mode flow (``mode="jvp"``; batching does not apply to "fd") with
    ``batching="vmap"`` and ``"batch"`` at 64 and 128 (tiny_64), and one window probe on a batch
    of 49 model-sized tiles: the two interleaved run by run (so that load on the machine hits
    both alike), min and median seconds of each."""
    predictor = predictor_of("tiny_64")
    cases = {}
    for side in (64, 128):
        f0, f1 = make_scene(SEED, (side, side)).pair(0)
        cases[str(side)] = lambda b, f0=f0, f1=f1: flow(predictor, f0, f1, mode="jvp", batching=b)
    g = torch.Generator().manual_seed(0)
    t0, t1 = (torch.rand(TILE_BATCH, 3, 64, 64, generator=g) for _ in range(2))
    cases[f"{TILE_BATCH} tiles"] = lambda b: window_flow(  # one 64 px window each: the default max_flow
        predictor, t0, t1, ProbeOptions(mode="jvp", batching=b).resolve(predictor, (64, 64)))
    out = {}
    for name, run in cases.items():
        runs = {"vmap": [], "batch": []}
        for b in runs:
            run(b)  # warm-up
        for r in range(max(5, repeats)):
            for b in (("vmap", "batch") if r % 2 == 0 else ("batch", "vmap")):
                runs[b].append(_timed(lambda b=b: run(b)))
        out[name] = {b: {"min": min(v), "median": float(np.median(v)), "runs": v} for b, v in runs.items()}
    return out


def official_row(variant: str, side: int, repeats: int) -> dict:
    """The official method and our sides (:data:`OURS`) on one pair: seconds (ours: best of
    ``repeats``, before and after the official run, the sides interleaved), forward-equivalents
    (seconds over one batch-1 forward), pass counts, and the official / ours ratio of each."""
    predictor = predictor_of(variant)
    f0, f1 = make_scene(SEED, (side, side)).pair(0)
    fwd = forward_seconds(predictor)
    sides = {**OURS, **(MODEL_SIZE if side != predictor.size[0] else {})}
    ours = {name: (lambda o=o: flow(predictor, f0, f1, **o)) for name, o in sides.items()}
    passes = {}
    for name, run_ours in ours.items():
        with count_engine() as counts:
            run_ours()
        passes[name] = _nonzero(counts)
    seconds = {name: [] for name in ours}
    for r in range(repeats):  # interleaved, so that load on the machine hits every side alike
        for name in (ours if r % 2 == 0 else reversed(list(ours))):
            seconds[name].append(_timed(ours[name]))
    official = _timed(lambda: official_style_flow(predictor, f0, f1))  # minutes at 128: one run
    for r in range(repeats):
        for name in (ours if r % 2 == 0 else reversed(list(ours))):
            seconds[name].append(_timed(ours[name]))
    gh, gw = predictor.grid
    row = {"variant": variant, "input": side, "model": list(predictor.size), "forward_s": fwd,
           "official": {"seconds": official, "forward_equivalents": official / fwd,
                        "passes": {"forward": OFFICIAL_PARTITIONS, "reverse": 4 * gh * gw}}}
    for name in ours:
        best_s = min(seconds[name])
        row[name] = {"options": sides[name], "seconds": best_s, "median_seconds": float(np.median(seconds[name])),
                     "forward_equivalents": best_s / fwd, "passes": passes[name], "ratio": official / best_s}
    row["ratio"] = row["default"]["ratio"]
    return row


def vitb_row(chunks: int = 1) -> dict:
    """ViT-B/8 2-frame at 224 (random weights): seconds of a dense pair by each side, projected
    from measured passes (a full field takes many minutes on a 2-core CPU). Ours: the default
    single window (224 = the model's size) in the default mode; ``chunks`` of its engine calls
    are run and the rest projected."""
    from probes.core import DEFAULT_MAX_FLOW_FRACTION, probe
    from probes.packing import Packing, pack_grid

    predictor = predictor_of("eccv2024_2frame_b8")
    fwd = forward_seconds(predictor, repeats=2)
    gh, gw = predictor.grid
    # One official reverse pass: the scalar mean of one target patch, back to the input.
    x = torch.rand(1, 3, 2, 224, 224, requires_grad=True)
    last = torch.ones(gh * gw, dtype=torch.bool)
    last[::OFFICIAL_PARTITIONS] = False
    mask = torch.cat([torch.zeros(gh * gw, dtype=torch.bool), last])[None]
    out = predictor.predict_fn(x, mask)[:, :, :8, 8:16].mean()
    reverse = best(lambda: torch.autograd.grad(out, x, retain_graph=True), 2)
    official = OFFICIAL_PARTITIONS * fwd + 4 * gh * gw * reverse
    f0, f1 = (torch.from_numpy(f).permute(2, 0, 1)[None].float() / 255 for f in make_scene(SEED, (224, 224)).pair(0))
    opts = ProbeOptions()
    full = pack_grid(predictor.grid, predictor.patch_size, DEFAULT_MAX_FLOW_FRACTION * 224)
    per_call = max(1, jacobian.auto_chunk_size(predictor) // opts.num_masks)
    keep = np.isin(full.pack, np.arange(per_call * chunks))
    part = Packing(full.sources[keep], full.pack[keep], per_call * chunks, full.max_flow)
    with count_engine() as counts:
        seconds = _timed(lambda: probe(predictor, f0, f1, part, opts))
    calls = -(-full.num_packs // per_call)
    ours = seconds / chunks * calls
    items = full.num_packs * opts.num_masks * (2 if opts.fd_central else 1)
    return {"variant": "eccv2024_2frame_b8", "input": 224, "forward_s": fwd, "reverse_pass_s": reverse,
            "official": {"projected_seconds": official, "forward_equivalents": official / fwd,
                         "passes": {"forward": OFFICIAL_PARTITIONS, "reverse": 4 * gh * gw}},
            "default": {"mode": opts.mode, "projected_seconds": ours, "forward_equivalents": ours / fwd,
                        "passes": {"fd_calls": calls, "fd_forward_items": items},
                        "engine_calls_run": chunks, "passes_run": _nonzero(counts), "seconds_run": seconds},
            "ratio": official / ours}


def run(repeats: int, vitb: bool, accuracy, batching: bool = True) -> dict:
    """The whole comparison; ``accuracy(size, methods)`` gives oracle EPE per method
    (``packed_fd``: our defaults; ``packed_jvp``: the defaults in forward mode)."""
    report = {"default_mode": DEFAULT_MODE, "rows": {}, "unit_costs": {}}
    for name, variant, side in ROWS:
        report["rows"][name] = official_row(variant, side, repeats)
        print(name, {k: round(report["rows"][name][k]["ratio"], 1) for k in OURS}, flush=True)
    for variant in ("tiny_64", "small_128"):
        counts = (1, 2, 4, 8, 16) if variant == "tiny_64" else (1, 2, 4, 8)
        report["unit_costs"][variant] = engine_unit_costs(predictor_of(variant), counts)
    if batching:
        report["batching"] = batching_comparison(repeats)
    report["epe"] = {str(s): accuracy(s, ("official_style", "packed_fd", "packed_jvp")) for s in (64, 128)}
    if vitb:
        report["rows"]["224 ViT-B/8"] = vitb_row()
    return report


def format_report(report: dict) -> str:
    lines = [f"{'row':<20} {'side':<8} {'s':>9} {'fwd-eq':>8} {'ratio':>7}  passes"]
    for name, r in report["rows"].items():
        o = r["official"]
        lines.append(f"{name:<20} {'official':<8} {o.get('seconds', o.get('projected_seconds')):9.3f} "
                     f"{o['forward_equivalents']:8.1f} {'':>7}  {o['passes']}")
        for side in (s for s in (*OURS, *MODEL_SIZE) if s in r):  # the ViT-B/8 row projects the default only
            d = r[side]
            ds = d.get("seconds", d.get("projected_seconds"))
            ratio = d.get("ratio", r["ratio"])
            lines.append(f"{'':<20} {side:<8} {ds:9.3f} {d['forward_equivalents']:8.1f} {ratio:6.1f}x  {d['passes']}")
    for v, c in report["unit_costs"].items():
        for b, f in c.items():
            lines.append(f"{v} {b}: fixed {f['fixed_s'] * 1e3:.1f} ms + {f['per_tangent_s'] * 1e3:.1f} ms/tangent "
                         f"(2 masks)")
    for k, v in report.get("batching", {}).items():
        lines.append(f"jvp batching {k}: vmap {v['vmap']['min']:.3f} s (median {v['vmap']['median']:.3f}), "
                     f"batch {v['batch']['min']:.3f} s (median {v['batch']['median']:.3f})")
    for s, e in report["epe"].items():
        lines.append(f"EPE {s}: " + ", ".join(f"{m} {x['epe']:.3f} (noc {x['epe_noc']:.3f})" for m, x in e.items()))
    return "\n".join(lines)
