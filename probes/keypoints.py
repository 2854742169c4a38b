"""Keypoints: the frame-1 patches that most reduce the prediction error, chosen greedily.

The talk's "points that reduce the error": starting from no revealed frame-1 patch, each step
reveals the one patch whose revelation lowers the reconstruction error of frame 1 the most. The
chosen patches are where the motion information lives (moving objects, disocclusions).
Each step scores every remaining candidate in one batched pass (chunked to bound memory).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from cwm import viz
from cwm.errors import InputError
from cwm.frames import from_tensor, resize, to_tensor_pair
from cwm.masking import last_frame_mask
from probes.results import ArrayResult


@dataclass
class KeypointResult(ArrayResult):
    """Greedy keypoints of one frame pair.

    Attributes:
        points: ``[n, 2]`` float32 ``(x, y)`` centres of the chosen patches, in input pixels, in
            the order they were chosen.
        patch_indices: ``[n]`` int64 last-frame patch indices (``i*w + j`` on the model grid).
        errors: ``[n + 1]`` float32 mean squared error of predicted frame 1 (RGB in [0, 1]) with
            0, 1, ..., n patches revealed; non-increasing for a model that copies revealed patches.
        reconstructions: ``[n + 1, H, W, 3]`` uint8 predicted frame 1 after each step, input size.
    """

    MAIN = "points"
    points: np.ndarray
    patch_indices: np.ndarray
    errors: np.ndarray
    reconstructions: np.ndarray

    def visualize(self) -> np.ndarray:
        """The last reconstruction with the chosen points drawn: uint8 ``[H, W, 3]``."""
        image = self.reconstructions[-1]
        return viz.points_overlay(image, self.points, radius=max(2, min(image.shape[:2]) // 64))


def _errors(predictor, clip: torch.Tensor, target: torch.Tensor, visible_sets: list[list[int]],
            chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Prediction and MSE for each set of visible patches: ``[K, 3, H, W]`` and ``[K]``."""
    n = predictor.grid[0] * predictor.grid[1]
    preds, errs = [], []
    for start in range(0, len(visible_sets), chunk_size):
        sets = visible_sets[start:start + chunk_size]
        last = torch.ones(len(sets), n, dtype=torch.bool)
        for r, s in enumerate(sets):
            last[r, s] = False
        mask = last_frame_mask(last, predictor.num_frames)
        pred = predictor.predict_fn(clip.expand(len(sets), -1, -1, -1, -1), mask.to(clip.device))
        preds.append(pred.float().cpu())
        errs.append((pred.float() - target).square().mean(dim=(1, 2, 3)).cpu())
    return torch.cat(preds), torch.cat(errs)


@torch.no_grad()
def keypoints(predictor, frame0, frame1, n: int = 8, chunk_size: int = 64) -> KeypointResult:
    """Choose ``n`` frame-1 patches greedily by how much revealing each reduces the error.

    Args:
        predictor: a :class:`cwm.predictor.CWMPredictor` or any object with its probe attributes
            (``predict_fn``, ``size``, ``grid``, ``patch_size``, ``num_frames``, ``device``).
        frame0, frame1: one pair of images (numpy uint8 ``[H, W, 3]`` or torch ``[3, H, W]``).
        n: number of keypoints, 1 <= n <= number of patches.
        chunk_size: candidates scored per batched forward pass.
    Costs ``sum_k (N - k)`` forward passes (N patches), batched ``chunk_size`` at a time.
    """
    f0, f1, batch = to_tensor_pair(frame0, frame1)
    if batch.batched and f0.shape[0] != 1:
        raise InputError("keypoints takes one frame pair, not a batch")
    total = predictor.grid[0] * predictor.grid[1]
    if not 1 <= n <= total:
        raise InputError(f"n must be in [1, {total}] (the model's patch count); got {n}")
    size = predictor.size
    frames = [resize(f0, size)] * (predictor.num_frames - 1) + [resize(f1, size)]
    clip = torch.stack(frames, dim=2).to(predictor.device)  # (1, 3, T, H, W)
    target = clip[:, :, -1]
    chosen: list[int] = []
    pred, err = _errors(predictor, clip, target, [[]], chunk_size)
    recons, errors = [pred[0]], [err[0].item()]
    for _ in range(n):
        candidates = [c for c in range(total) if c not in chosen]
        preds, errs = _errors(predictor, clip, target, [chosen + [c] for c in candidates], chunk_size)
        best = int(torch.argmin(errs))
        chosen.append(candidates[best])
        recons.append(preds[best])
        errors.append(errs[best].item())
    return KeypointResult(
        points=_patch_centres(chosen, predictor, batch.size),
        patch_indices=np.asarray(chosen, dtype=np.int64),
        errors=np.asarray(errors, dtype=np.float32),
        reconstructions=from_tensor(resize(torch.stack(recons), batch.size),
                                    dataclasses.replace(batch, numpy=True, batched=True)),
    )


def _patch_centres(indices: list[int], predictor, size: tuple[int, int]) -> np.ndarray:
    """``(x, y)`` input-pixel centres of model-grid patches."""
    gh, gw = predictor.grid
    h, w = size
    ij = np.array([divmod(i, gw) for i in indices], dtype=np.float64).reshape(-1, 2)
    return np.stack([(ij[:, 1] + 0.5) * w / gw - 0.5, (ij[:, 0] + 0.5) * h / gh - 0.5], 1).astype(np.float32)
