"""Demo 1, temporal factoring: predict frame 1 from frame 0 and 1, 2, 4 or 8 revealed frame-1 patches.

Frame 0 is fully visible; only a handful of frame-1 patches are shown to the model (outlined in
yellow), and it predicts the rest. Top row: the patches are chosen greedily, each the one that
lowers the error most (:meth:`cwm.predictor.CWMPredictor.keypoints`), so a few patches on the moving
objects carry their motion. Bottom row: the same numbers of patches chosen at random.

    python -m demos.factual_prediction --out demos_out/factual
"""
from __future__ import annotations

import sys

import numpy as np

from demos._common import load, parser, sample_pair, save

COUNTS = (1, 2, 4, 8)
GAP = 2  # frames apart: enough motion to see at the sample's speed


def mse(image: np.ndarray, target: np.ndarray) -> float:
    """Mean squared error of two uint8 images, on [0, 1] intensities."""
    return float(np.mean((image.astype(np.float32) / 255 - target.astype(np.float32) / 255) ** 2))


def main(argv: list[str] | None = None) -> int:
    import torch

    from cwm.viz import draw_patches
    from cwm.viz import side_by_side

    args = parser("factual_prediction", __doc__).parse_args(argv)
    predictor = load(args)
    f0, f1 = sample_pair(GAP)
    n_patches = predictor.grid[0] * predictor.grid[1]
    counts = [k for k in (COUNTS[:3] if args.fast else COUNTS) if k <= n_patches]
    greedy = predictor.keypoints(f0, f1, n=max(counts))

    blank = np.full_like(f0, 255)
    top, bottom = [f0, f1], [blank, blank]
    labels = ["frame 0", "frame 1"]
    rng = torch.Generator().manual_seed(0)
    for k in counts:
        chosen = greedy.patch_indices[:k].tolist()
        top.append(draw_patches(greedy.reconstructions[k], chosen, predictor.grid))
        random = torch.randperm(n_patches, generator=rng)[:k].tolist()
        mask = torch.ones(n_patches, dtype=torch.bool)
        mask[random] = False
        pred = predictor.predict(f0, f1, mask=mask)
        bottom.append(draw_patches(pred, random, predictor.grid))
        labels.append(f"{k} patch{'es' if k > 1 else ''}")
        print(f"{k} revealed: mse greedy {mse(greedy.reconstructions[k], f1):.4f}, random {mse(pred, f1):.4f}")
    figure = np.concatenate([side_by_side(top, labels), side_by_side(bottom, ["", "", *["random"] * len(counts)])])
    save(args, "factual_prediction.png", figure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
