"""Learning curve on held-out validation scenes: flow EPE over zero flow's, per checkpoint.

Two validation sets, neither used in training nor in the scored suites:
- synthetic: 40 procedural scenes, seeds 7000-7039 (the suite uses 1000-1099), preset "default"
  and "objects" alternating, 64 px;
- photos: 40 real-photo scenes (:mod:`cwm.synthetic.photos`), seeds 9000-9039, 64 px, whose
  textures come from visp-images-data photos that no training folder holds (Klimt, the Solvay
  conference, faces).

    python benchmarks/learning_curve.py runs/real --out benchmarks/results/learning_curve.json
    python benchmarks/learning_curve.py default cwm/weights/default          # weights folders too

Each point is the mean EPE of cwm's flow (default options) over the mean EPE of zero flow on
the same scenes (lower is better), and the same for the raw reading (``verify=False``).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

VISP = Path("/usr/share/visp-images-data/ViSP-images")
HELD_OUT_PHOTOS = [VISP / "Klimt", VISP / "Solvay", VISP / "faces"]


def validation_scenes(count: int = 40):
    from cwm.synthetic import make_scene
    from cwm.synthetic.photos import PhotoBank, make_photo_scene

    synthetic = [make_scene(7000 + i, (64, 64), preset=("default", "objects")[i % 2]) for i in range(count)]
    missing = [str(p) for p in HELD_OUT_PHOTOS if not p.is_dir()]
    if missing:
        sys.exit(f"error: {missing[0]} not found: install Debian's visp-images-data")
    bank = PhotoBank.from_folders(HELD_OUT_PHOTOS, exclude=())
    photos = [make_photo_scene(bank, 9000 + i, (64, 64)) for i in range(count)]
    return {"synthetic": synthetic, "photos": photos}


def epe_ratio(predictor, scenes, **options) -> float:
    from cwm.metrics import endpoint_error

    cwm_err, zero_err = [], []
    for s in scenes:
        flow = predictor.flow(s.frames[0], s.frames[1], **options).flow
        cwm_err.append(endpoint_error(flow, s.flow[0]).mean())
        zero_err.append(np.hypot(s.flow[0][..., 0], s.flow[0][..., 1]).mean())
    return float(np.mean(cwm_err) / np.mean(zero_err))


def weights_list(sources: list[str]) -> list[tuple[str, str]]:
    """``(label, weights)`` for weights names/folders and for runs (each of its checkpoints)."""
    out = []
    for src in sources:
        ckpts = sorted((Path(src) / "checkpoints").glob("step_*")) if Path(src, "checkpoints").is_dir() else []
        if ckpts:
            out += [(f"{src}@{c.name[5:].lstrip('0') or '0'}", str(c)) for c in ckpts]
        else:
            out.append((src, src))
    return out


def load(weights: str):
    import cwm

    if Path(weights, "model.safetensors").is_file() and not Path(weights, "config.json").is_file():
        from pretrain.export import export_checkpoint   # a training checkpoint: export it first

        with tempfile.TemporaryDirectory() as tmp:  # the weights are read into memory
            return cwm.load(str(export_checkpoint(weights, Path(tmp) / "w")), device="cpu")
    return cwm.load(weights, device="cpu")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sources", nargs="+", help="weights names/folders, or run folders (every checkpoint)")
    ap.add_argument("--out", help="write the points here as JSON")
    ap.add_argument("--count", type=int, default=40, help="scenes per validation set")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    sets = validation_scenes(args.count)
    rows = []
    print(f"{'weights':40s} {'synthetic':>10s} {'raw':>7s} {'photos':>8s} {'raw':>7s}   (EPE / zero flow's)", flush=True)
    for label, weights in weights_list(args.sources):
        predictor = load(weights)
        row = {"weights": label}
        for name, scenes in sets.items():
            row[name] = epe_ratio(predictor, scenes)
            row[f"{name}_raw"] = epe_ratio(predictor, scenes, verify=False)
        rows.append(row)
        print(f"{label:40s} {row['synthetic']:10.3f} {row['synthetic_raw']:7.3f} {row['photos']:8.3f} "
              f"{row['photos_raw']:7.3f}", flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"count": args.count, "points": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
