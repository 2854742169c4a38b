"""Patches and masks.

Token order is frame-major, then row-major: token ``t*h*w + i*w + j`` is patch row ``i``, column
``j`` of frame ``t``. A mask is bool ``[B, T*h*w]`` with **True = masked (to predict)**, the
official convention. The temporally factored policy keeps every frame but the last fully visible
and reveals a small fraction of the last frame.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from einops import rearrange

from cwm.errors import ConfigError

Grid = tuple[int, int]


#: Fraction of frame-1 patches :meth:`cwm.predictor.CWMPredictor.predict` reveals by default (at
#: least one patch): nearly the factual prediction of frame 1 from frame 0. One concept, one name:
#: inference calls it ``visible`` (revealed fraction; the probes' default is
#: :data:`probes.core.DEFAULT_VISIBLE`); pretraining and :func:`make_mask` take ``mask_ratio``,
#: the masked fraction, ``1 - visible``.
PREDICT_VISIBLE = 0.01


def patchify(frames: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut frames into flat patches.

    Args:
        frames: ``[B, C, H, W]`` or a video ``[B, C, T, H, W]``.
    Returns:
        ``[B, N, p*p*C]`` with N = (T*)h*w tokens in token order, each patch flattened in
        (row, col, channel) order, channel fastest (the decoder head's output layout).
    """
    p = patch_size
    if frames.ndim == 4:
        return rearrange(frames, "b c (h p) (w q) -> b (h w) (p q c)", p=p, q=p)
    return rearrange(frames, "b c t (h p) (w q) -> b (t h w) (p q c)", p=p, q=p)


def unpatchify(patches: torch.Tensor, patch_size: int, grid: Grid, num_frames: int | None = None) -> torch.Tensor:
    """Exact inverse of :func:`patchify`.

    Args:
        patches: ``[B, N, p*p*C]``.
        grid: patch grid ``(h, w)`` of one frame.
        num_frames: None for images (N = h*w), else T for a video (N = T*h*w).
    Returns:
        ``[B, C, H, W]`` or ``[B, C, T, H, W]``.
    """
    p, (h, w) = patch_size, grid
    if num_frames is None:
        return rearrange(patches, "b (h w) (p q c) -> b c (h p) (w q)", h=h, w=w, p=p, q=p)
    return rearrange(patches, "b (t h w) (p q c) -> b c t (h p) (w q)", t=num_frames, h=h, w=w, p=p, q=p)


def num_visible(tokens_per_frame: int, mask_ratio: float) -> int:
    """Visible last-frame patches for a mask ratio: round((1 - ratio) * n), never fewer than one."""
    if not 0.0 <= mask_ratio < 1.0:
        raise ConfigError(f"mask ratio must be in [0, 1) (got {mask_ratio})")
    return max(1, min(tokens_per_frame, round((1.0 - mask_ratio) * tokens_per_frame)))


def _generator(seed: int | torch.Generator | None) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    g = torch.Generator()
    g.manual_seed(0 if seed is None else int(seed))
    return g


def _clumped_order(grid: Grid, clump: int, g: torch.Generator) -> torch.Tensor:
    """A random order of last-frame patches in which each clump x clump block is contiguous."""
    h, w = grid
    ch, cw = -(-h // clump), -(-w // clump)
    order = []
    for c in torch.randperm(ch * cw, generator=g).tolist():
        ci, cj = divmod(c, cw)
        for di in range(clump):
            for dj in range(clump):
                i, j = ci * clump + di, cj * clump + dj
                if i < h and j < w:
                    order.append(i * w + j)
    return torch.tensor(order)


def make_mask(
    batch: int,
    num_frames: int,
    grid: Grid,
    mask_ratio: float | tuple[float, float] = 0.99,
    clump: int = 1,
    seed: int | torch.Generator | None = None,
) -> torch.Tensor:
    """The temporally factored mask: frames 0..T-2 visible, most of the last frame masked.

    Args:
        batch: B.
        num_frames: T >= 2.
        grid: patch grid ``(h, w)`` of one frame.
        mask_ratio: masked fraction of the last frame, or a range ``(lo, hi)`` from which one
            ratio is drawn per call (one per batch, since the official forward needs the same
            number of masked tokens in every sample).
        clump: reveal patches in clump x clump blocks (2 gives the 2023 demos' 2x2 clumps); the
            visible count is still exact (the last block may be partial).
        seed: int seed or a ``torch.Generator``; the same seed gives the same mask.
    Returns:
        bool ``[B, T*h*w]``, True = masked.
    """
    if num_frames < 2:
        raise ConfigError(f"num_frames must be >= 2 (got {num_frames})")
    g = _generator(seed)
    n = grid[0] * grid[1]
    if isinstance(mask_ratio, Sequence):
        lo, hi = mask_ratio
        if not 0.0 <= lo <= hi < 1.0:
            raise ConfigError(f"mask ratio range must satisfy 0 <= lo <= hi < 1 (got {mask_ratio})")
        mask_ratio = lo + (hi - lo) * torch.rand((), generator=g).item()
    k = num_visible(n, mask_ratio)
    mask = torch.zeros(batch, num_frames * n, dtype=torch.bool)
    for b in range(batch):
        order = _clumped_order(grid, clump, g) if clump > 1 else torch.randperm(n, generator=g)
        last = torch.ones(n, dtype=torch.bool)
        last[order[:k]] = False
        mask[b, -n:] = last
    return mask


def mask_from_visible(visible: Sequence[Sequence[int]], num_frames: int, grid: Grid) -> torch.Tensor:
    """Explicit masks from lists of visible last-frame patch indices (``i*w + j``), one list per sample.

    All lists must have the same length (the official forward needs equal masked counts).
    Returns bool ``[B, T*h*w]``, True = masked.
    """
    n = grid[0] * grid[1]
    lengths = {len(set(v)) for v in visible}
    if len(lengths) > 1:
        raise ConfigError(f"every sample needs the same number of visible patches (got {sorted(lengths)})")
    mask = torch.zeros(len(visible), num_frames * n, dtype=torch.bool)
    mask[:, -n:] = True
    for b, idx in enumerate(visible):
        idx = list(idx)
        if any(not 0 <= i < n for i in idx):
            raise ConfigError(f"visible patch index out of range [0, {n}): {idx}")
        mask[b, (num_frames - 1) * n + torch.tensor(idx, dtype=torch.long)] = False
    return mask


def partition_last_frame(k: int, grid: Grid, seed: int | torch.Generator | None = None) -> torch.Tensor:
    """k disjoint random sets of last-frame patches that together cover the frame.

    Returns bool ``[k, h*w]``; row r is True on the patches of partition r. Sizes differ by at most one.
    """
    n = grid[0] * grid[1]
    if not 1 <= k <= n:
        raise ConfigError(f"number of partitions must be in [1, {n}] (got {k})")
    order = torch.randperm(n, generator=_generator(seed))
    parts = torch.zeros(k, n, dtype=torch.bool)
    for r in range(k):
        parts[r, order[r::k]] = True
    return parts


def last_frame_mask(last: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Full mask ``[B, T*h*w]`` from a last-frame mask ``[B, h*w]`` (True = masked); earlier frames visible."""
    b, n = last.shape
    return torch.cat([torch.zeros(b, (num_frames - 1) * n, dtype=torch.bool, device=last.device), last.bool()], 1)


def patch_at(x: float, y: float, patch_size: int, grid: Grid) -> int:
    """Index ``i*w + j`` of the patch holding the point ``(x, y)`` (model pixels, pixel centres at
    whole numbers, so patch ``j`` spans ``[j*p - 0.5, (j+1)*p - 0.5)``), clamped to the grid."""
    gh, gw = grid
    i = int(np.clip(np.floor((y + 0.5) / patch_size), 0, gh - 1))
    j = int(np.clip(np.floor((x + 0.5) / patch_size), 0, gw - 1))
    return i * gw + j
