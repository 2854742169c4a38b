"""Frames at the API boundary: validation, batching, resizing.

Accepted images (docs/design.md §2):
- numpy ``uint8 [H, W, 3]`` RGB or a batch ``[B, H, W, 3]``. Grayscale ``[H, W]`` / ``[H, W, 1]``
  is converted to RGB by replication; RGBA ``[H, W, 4]`` has its alpha dropped (not composited).
- torch float ``[3, H, W]`` or ``[B, 3, H, W]`` in [0, 1].
Results come back in the same kind (numpy uint8 or torch float) and the same batching.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cwm.errors import InputError


@dataclass(frozen=True)
class Batch:
    """How the user's frames looked, so results can be returned the same way."""

    numpy: bool
    batched: bool
    size: tuple[int, int]  # (H, W) of the original input


def _numpy_rgb(a: np.ndarray, name: str) -> np.ndarray:
    if a.dtype != np.uint8:
        raise InputError(f"{name}: numpy images must be uint8 RGB (got dtype {a.dtype}); "
                         "pass a torch float tensor in [0, 1] for float data")
    if a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (1, 4) and a.shape[-1] != 3):
        a = a[..., None] if a.ndim == 2 else a
        a = np.repeat(a, 3, axis=-1) if a.shape[-1] == 1 else a[..., :3]
    if a.ndim not in (3, 4) or a.shape[-1] != 3:
        raise InputError(f"{name}: expected an image [H, W, 3] or a batch [B, H, W, 3] (got shape {a.shape})")
    return a


def to_tensor(frames, name: str = "frame", min_size: int = 2) -> tuple[torch.Tensor, Batch]:
    """User frames -> float ``[B, 3, H, W]`` in [0, 1], plus how to convert back."""
    if isinstance(frames, np.ndarray):
        a = _numpy_rgb(frames, name)
        batched = a.ndim == 4
        t = torch.from_numpy(np.ascontiguousarray(a if batched else a[None])).permute(0, 3, 1, 2).float() / 255.0
        is_numpy = True
    elif isinstance(frames, torch.Tensor):
        if frames.ndim not in (3, 4) or frames.shape[-3] != 3:
            raise InputError(f"{name}: expected a tensor [3, H, W] or [B, 3, H, W] (got shape {tuple(frames.shape)})")
        if not frames.is_floating_point():
            raise InputError(f"{name}: torch images must be float in [0, 1] (got {frames.dtype})")
        if not torch.isfinite(frames).all():
            raise InputError(f"{name}: contains NaN or inf values")
        batched = frames.ndim == 4
        t = frames if batched else frames[None]
        is_numpy = False
    else:
        raise InputError(f"{name}: expected a numpy uint8 image or a torch tensor (got {type(frames).__name__})")
    h, w = t.shape[-2:]
    if h < min_size or w < min_size:
        raise InputError(f"{name}: image is {w}x{h} pixels; at least {min_size}x{min_size} is needed")
    return t, Batch(is_numpy, batched, (h, w))


def to_tensor_pair(frame0, frame1) -> tuple[torch.Tensor, torch.Tensor, Batch]:
    """Two frames of one pair, checked to have the same kind, size and batch."""
    t0, b0 = to_tensor(frame0, "frame0")
    t1, b1 = to_tensor(frame1, "frame1")
    if t0.shape != t1.shape:
        raise InputError(f"frame sizes differ: frame0 is {tuple(t0.shape)} and frame1 is {tuple(t1.shape)} "
                         "([B, 3, H, W])")
    if b0.numpy != b1.numpy:
        raise InputError("frame0 and frame1 must both be numpy or both be torch")
    return t0, t1, b0


def from_tensor(t: torch.Tensor, batch: Batch) -> np.ndarray | torch.Tensor:
    """Float ``[B, 3, H, W]`` in [0, 1] -> the user's kind and batching."""
    t = t.detach().float().clamp(0, 1)
    if batch.numpy:
        out = (t.permute(0, 2, 3, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
    else:
        out = t
    return out if batch.batched else out[0]


def resize(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``[..., H, W]`` to ``size = (H', W')`` (antialiased when shrinking)."""
    if tuple(t.shape[-2:]) == tuple(size):
        return t
    lead = t.shape[:-2]
    flat = t.reshape(-1, 1, *t.shape[-2:]) if t.ndim != 4 else t
    out = F.interpolate(flat, size=size, mode="bilinear", align_corners=False,
                        antialias=size[0] < t.shape[-2] or size[1] < t.shape[-1])
    return out.reshape(*lead, *size)


def scale_points(points, src: tuple[int, int], dst: tuple[int, int]) -> np.ndarray:
    """Map ``(x, y)`` pixel points from an ``src=(H, W)`` image to ``dst=(H', W')`` (pixel centres aligned).

    Returns float64 ``[N, 2]``.
    """
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    sx, sy = dst[1] / src[1], dst[0] / src[0]
    return np.stack([(p[:, 0] + 0.5) * sx - 0.5, (p[:, 1] + 0.5) * sy - 0.5], axis=1)


def check_points(points, size: tuple[int, int], name: str = "points") -> np.ndarray:
    """Validate ``(x, y)`` points inside an image of ``size=(H, W)``; returns float64 ``[N, 2]``."""
    try:
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    except (TypeError, ValueError):
        raise InputError(f"{name}: expected a list of (x, y) pairs (got {points!r})") from None
    if not np.isfinite(p).all():
        raise InputError(f"{name}: contains NaN or inf")
    h, w = size
    bad = (p[:, 0] < 0) | (p[:, 0] > w - 1) | (p[:, 1] < 0) | (p[:, 1] > h - 1)
    if bad.any():
        x, y = p[np.argmax(bad)]
        raise InputError(f"{name}: point ({x:g}, {y:g}) is outside the {w}x{h} image")
    return p


def check_queries(queries, num_frames: int, size: tuple[int, int]) -> np.ndarray:
    """Validated ``[N, 3]`` float64 queries ``(t, x, y)``: integer frames in ``0..T-1``, points in
    the frame (``-0.5 <= x < W - 0.5``, likewise y). InputError names the first bad query."""
    try:
        q = np.asarray(queries, np.float64)
    except (TypeError, ValueError):
        raise InputError("queries: expected rows (t, x, y)") from None
    if q.ndim != 2 or q.shape[1] != 3 or not len(q):
        raise InputError(f"queries must be [N, 3] rows (t, x, y) with N >= 1, got shape {q.shape}")
    if not np.isfinite(q).all():
        raise InputError("queries: contain NaN or inf")
    h, w = size
    for i, (t, x, y) in enumerate(q):
        if t != round(t) or not 0 <= t < num_frames:
            raise InputError(f"query {i}: frame {t:g} is not one of the video's frames 0..{num_frames - 1}")
        if not (-0.5 <= x < w - 0.5 and -0.5 <= y < h - 0.5):
            raise InputError(f"query {i}: point ({x:g}, {y:g}) is outside the {w}x{h} frame")
    return q


def shift_image(img: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """``img [B, C, H, W]`` moved by ``d [B, 2]`` = ``(dx, dy)`` pixels: ``out(x) = img(x - d)``.

    Separable Catmull-Rom (cubic convolution) interpolation, border-replicated, as two banded
    matrix products, so that it is differentiable in ``img`` and ``d`` in forward mode too. At
    whole-pixel shifts its derivative in ``d`` is minus the central-difference gradient of the
    shifted image, the gradient the probes read motion with (bilinear would be one-sided).
    """
    rows = _shift_matrix(d[:, 1], img.shape[2], img.dtype)  # (B, H, H)
    cols = _shift_matrix(d[:, 0], img.shape[3], img.dtype)  # (B, W, W)
    return rows[:, None] @ img @ cols[:, None].transpose(-1, -2)


def _shift_matrix(shift: torch.Tensor, n: int, dtype: torch.dtype) -> torch.Tensor:
    """``[B, n, n]``: row i holds the Catmull-Rom weights of the source pixels of output ``i``."""
    pos = torch.arange(n, dtype=dtype, device=shift.device)[None] - shift.to(dtype)[:, None]  # (B, n)
    base = pos.detach().floor()
    t = pos - base
    weights = torch.stack([(-t ** 3 + 2 * t ** 2 - t) / 2, (3 * t ** 3 - 5 * t ** 2 + 2) / 2,
                           (-3 * t ** 3 + 4 * t ** 2 + t) / 2, (t ** 3 - t ** 2) / 2], -1)  # (B, n, 4)
    idx = (base.long()[..., None] + torch.arange(-1, 3, device=shift.device)).clamp(0, n - 1)
    return torch.zeros(*pos.shape, n, dtype=dtype, device=shift.device).scatter_add(2, idx, weights)
