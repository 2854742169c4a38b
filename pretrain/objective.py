"""The pretraining objective: masks and the masked-patch MSE (never inside the model).

The model predicts RGB in [0, 1] for every masked token (docs/design.md §3); the loss is the plain
MSE against the un-normalised [0, 1] pixels of the masked last-frame patches.
"""
from __future__ import annotations

import numpy as np
import torch

from cwm.masking import last_frame_mask, num_visible, patchify


def step_ratio(mask_range: tuple[float, float], seed: int, step: int, micro: int = 0) -> float:
    """The mask ratio of one micro-batch: drawn from ``mask_range`` by (seed, step, micro).

    Every process draws the same ratio, so the masked count is equal across the global batch.
    """
    lo, hi = mask_range
    if lo == hi:
        return lo
    return lo + (hi - lo) * float(np.random.default_rng([seed, step, micro, 2]).random())


def mask_from_noise(noise: torch.Tensor, num_frames: int, ratio: float | None) -> torch.Tensor:
    """The temporally factored mask: frames before the last visible, the last one masked except
    its ``num_visible`` patches with the smallest noise.

    Args:
        noise: ``[B, h*w]`` per-patch uniform numbers (from the dataset item).
        ratio: masked fraction of the last frame; None masks all of it (no visible patch).
    Returns:
        bool ``[B, T*h*w]``, True = masked.
    """
    b, n = noise.shape
    last = torch.ones(b, n, dtype=torch.bool, device=noise.device)
    if ratio is not None:
        k = num_visible(n, ratio)
        last.scatter_(1, noise.argsort(dim=1)[:, :k], False)  # (B, n): False = visible
    return last_frame_mask(last, num_frames)


def to_model_input(video: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 ``[B, T, H, W, 3]`` -> (normalised ``[B, 3, T, H, W]``, RGB in [0, 1] ``[B, 3, T, H, W]``)."""
    rgb = video.permute(0, 4, 1, 2, 3).float().div_(255.0)  # (B, 3, T, H, W)
    return (rgb - mean.view(1, 3, 1, 1, 1)) / std.view(1, 3, 1, 1, 1), rgb


def masked_targets(frame: torch.Tensor, mask: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Pixels of the masked last-frame patches: ``[B, 3, H, W]`` -> ``[B, N_masked, 3*p*p]``.

    Works for any frame (the copy-frame-0 baseline passes frame 0 here).
    """
    patches = patchify(frame, patch_size)  # (B, n, 3pp)
    b, n, d = patches.shape
    return patches[mask[:, -n:]].reshape(b, -1, d)


def masked_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error in float32 (the prediction may be bf16 under autocast)."""
    return torch.mean((pred.float() - target.float()) ** 2)


def pick_positions(pred_all: torch.Tensor, mask_all: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """From predictions of every ``mask_all`` token, keep those of the (fewer) ``mask`` tokens.

    Lets the no-visible-patch prediction be scored on exactly the positions of the masked one.
    """
    b, _, d = pred_all.shape
    keep = mask[mask_all].reshape(b, -1)  # (B, N_all): which of mask_all's tokens are in mask
    return pred_all[keep].reshape(b, -1, d)
