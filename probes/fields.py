"""Operations on flow-like fields: sampling, inversion, grid upsampling, hole filling, resizing.

Fields are torch ``[B, H, W, C]`` (channels last, like flows ``[..., 2]`` = ``(dx, dy)``) at
pixel centres with integer coordinates ``(x, y) = (column, row)``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

#: Fixed-point iterations used to invert a flow (see :func:`invert_flow`).
INVERSION_ITERATIONS = 30


def pixel_grid(size: tuple[int, int], dtype=torch.float64, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``xs, ys [H, W]``: the pixel-centre coordinates."""
    ys, xs = torch.meshgrid(torch.arange(size[0], dtype=dtype, device=device),
                            torch.arange(size[1], dtype=dtype, device=device), indexing="ij")
    return xs, ys


def sample_field(field: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of ``field [B, H, W, C]`` at pixels ``xs, ys [B, H', W']`` (border clamped).

    Returns ``[B, H', W', C]``.
    """
    h, w = field.shape[1:3]
    grid = torch.stack([(xs + 0.5) / w * 2 - 1, (ys + 0.5) / h * 2 - 1], -1).to(field.dtype)
    out = F.grid_sample(field.permute(0, 3, 1, 2), grid, mode="bilinear", padding_mode="border",
                        align_corners=False)
    return out.permute(0, 2, 3, 1)


def invert_flow(flow: torch.Tensor, iterations: int = INVERSION_ITERATIONS) -> torch.Tensor:
    """The field ``g`` with ``g(x) = -flow(x + g(x))``: a backward flow from a forward one, or back.

    ``flow [B, H, W, 2]`` (or ``[H, W, 2]``). Fixed-point iteration, which converges where the
    flow is smooth with ``|grad flow| < 1``; at occlusions it settles on a neighbour's value.
    """
    single = flow.ndim == 3
    f = flow[None] if single else flow
    xs, ys = pixel_grid(f.shape[1:3], f.dtype, f.device)
    g = -f
    for _ in range(iterations):
        g = -sample_field(f, xs + g[..., 0], ys + g[..., 1])
    return g[0] if single else g


def upsample_grid(values: torch.Tensor, stride: int) -> torch.Tensor:
    """Bilinear upsampling of cell-centred grid values ``[B, gh, gw, C]`` to ``[B, gh*s, gw*s, C]``.

    Values sit at the cell centres of :func:`probes.packing.grid_sources`; beyond the outer
    centres the field is extrapolated linearly (so affine fields are reproduced exactly).
    """
    if stride == 1:
        return values
    v = values.permute(0, 3, 1, 2)  # (B, C, gh, gw)
    for dim in (2, 3):
        if v.shape[dim] >= 2:
            first, last = v.narrow(dim, 0, 1), v.narrow(dim, v.shape[dim] - 1, 1)
            before = 2 * first - v.narrow(dim, 1, 1)
            after = 2 * last - v.narrow(dim, v.shape[dim] - 2, 1)
            v = torch.cat([before, v, after], dim)
        else:
            v = torch.cat([v, v, v], dim)
    gh, gw = v.shape[2] - 2, v.shape[3] - 2
    up = F.interpolate(v, size=((gh + 2) * stride, (gw + 2) * stride), mode="bilinear", align_corners=False)
    return up[:, :, stride:-stride, stride:-stride].permute(0, 2, 3, 1)


def fill_holes(values: torch.Tensor, good: torch.Tensor) -> torch.Tensor:
    """Replace values where ``good [B, gh, gw]`` is False by the mean of good 3x3 neighbours,
    growing inwards until every hole is filled (``values [B, gh, gw, C]``). Returns a new tensor."""
    good = good.clone()
    v = (values * good[..., None]).permute(0, 3, 1, 2)
    weight = good[:, None].to(values.dtype)
    for _ in range(max(values.shape[1:3])):
        if bool(good.all()) or not bool(good.any()):
            break
        num = F.avg_pool2d(v, 3, 1, 1) * 9
        den = F.avg_pool2d(weight, 3, 1, 1) * 9
        new = (~good[:, None]) & (den > 0)
        v = torch.where(new, num / den.clamp(min=1e-12), v)
        weight = torch.where(new, torch.ones_like(weight), weight)
        good = good | new[:, 0]
    return v.permute(0, 2, 3, 1)


def resize_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Flow ``[B, H, W, 2]`` resized to ``size = (H', W')`` with its vectors rescaled (x by
    ``W'/W``, y by ``H'/H``). Bilinear, pixel centres aligned."""
    h, w = flow.shape[1:3]
    if (h, w) == tuple(size):
        return flow
    out = F.interpolate(flow.permute(0, 3, 1, 2), size=size, mode="bilinear", align_corners=False)
    scale = torch.tensor([size[1] / w, size[0] / h], dtype=flow.dtype, device=flow.device)
    return out.permute(0, 2, 3, 1) * scale


def resize_scalar(field: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``[B, H, W]`` to ``size = (H', W')``."""
    if tuple(field.shape[1:]) == tuple(size):
        return field
    return F.interpolate(field[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
