"""Source packing and the per-source peak readout.

Several sources share one tangent when their response windows cannot overlap: a source ``p``
responds within ``max_flow`` of itself (per axis), so two sources further apart than
``2 * max_flow`` (Chebyshev distance) can share a tangent and each response is read in its own
window ``|q - p| <= max_flow``. Points are ``(x, y) = (column, row)`` pixels at the resolution
probed, pixel centres at integer coordinates.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from cwm.errors import ConfigError

#: Sub-pixel refinements of the integer argmax.
REFINEMENTS = ("gaussian", "quadratic", "centroid", "none")
_TINY = 1e-30  # floor under log() of a response
#: Farthest a peak at the image border is extrapolated outwards, in pixels.
MAX_EXTRAPOLATION = 3.0


@dataclass(frozen=True)
class Packing:
    """Sources grouped into tangents.

    Attributes:
        sources: ``[N, 2]`` float64 source points ``(x, y)``.
        pack: ``[N]`` int, the tangent each source belongs to.
        num_packs: number of tangents.
        max_flow: search radius (per axis) in pixels; every pair of sources in one pack is more
            than ``2 * max_flow`` apart.
    """

    sources: np.ndarray
    pack: np.ndarray
    num_packs: int
    max_flow: float

    def members(self) -> list[torch.Tensor]:
        """For each pack, the indices of its sources (a list of ``[n_i]`` long tensors)."""
        order = np.argsort(self.pack, kind="stable")
        bounds = np.searchsorted(self.pack[order], np.arange(self.num_packs + 1))
        return [torch.from_numpy(order[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def grid_sources(size: tuple[int, int], stride: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Sources at the centres of ``stride x stride`` cells: ``[gh*gw, 2]`` ``(x, y)`` row-major, and ``(gh, gw)``.

    Cell ``(i, j)`` covers rows ``i*stride .. (i+1)*stride - 1``; its centre is at
    ``(j*stride + (stride-1)/2, i*stride + (stride-1)/2)``, so bilinear resizing of the grid
    (``align_corners=False``) puts every value back at its source.
    """
    h, w = size
    if stride < 1 or h % stride or w % stride:
        raise ConfigError(f"stride {stride} must be >= 1 and divide the probed size {w}x{h}")
    gh, gw = h // stride, w // stride
    off = (stride - 1) / 2.0
    ys, xs = np.meshgrid(off + stride * np.arange(gh), off + stride * np.arange(gw), indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64), (gh, gw)


def check_max_flow(max_flow: float) -> float:
    """``max_flow`` as a float; raises ConfigError unless it is finite and > 0."""
    try:
        value = float(max_flow)
    except (TypeError, ValueError):
        raise ConfigError(f"max_flow must be a number of pixels (got {max_flow!r})") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"max_flow must be > 0 pixels (got {max_flow})")
    return value


def pack_grid(grid: tuple[int, int], stride: int, max_flow: float) -> Packing:
    """Pack a :func:`grid_sources` grid: sources ``k`` cells apart share a tangent.

    ``k`` is the smallest number of cells with ``k * stride > 2 * max_flow``; the packs are
    the ``k x k`` phases of the grid, so there are ``min(k, gh) * min(k, gw)`` tangents.
    """
    max_flow = check_max_flow(max_flow)
    gh, gw = grid
    k = math.floor(2 * max_flow / stride) + 1
    ky, kx = min(k, gh), min(k, gw)
    i, j = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    pack = ((i % k) * kx + (j % k)).ravel()
    sources, _ = grid_sources((gh * stride, gw * stride), stride)
    return Packing(sources, pack, ky * kx, max_flow)


def pack_points(points: np.ndarray, max_flow: float) -> Packing:
    """Pack arbitrary points greedily (in the given order): a point joins the first pack whose
    members are all more than ``2 * max_flow`` away from it (Chebyshev distance)."""
    max_flow = check_max_flow(max_flow)
    points = np.asarray(points, np.float64).reshape(-1, 2)
    pack = np.zeros(len(points), np.int64)
    packs: list[list[int]] = []
    for n, p in enumerate(points):
        for k, members in enumerate(packs):
            if np.abs(points[members] - p).max(1).min() > 2 * max_flow:
                members.append(n)
                pack[n] = k
                break
        else:
            pack[n] = len(packs)
            packs.append([n])
    return Packing(points, pack, len(packs), max_flow)


def unpacked(points: np.ndarray, max_flow: float) -> Packing:
    """One source per tangent (no packing), for comparisons."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    return Packing(points, np.arange(len(points)), len(points), check_max_flow(max_flow))


def window_offsets(max_flow: float) -> torch.Tensor:
    """Integer offsets ``[-R-1 .. R+1]`` (``R = ceil(max_flow)``) that cover every window."""
    r = math.ceil(max_flow) + 1
    return torch.arange(-r, r + 1)


def _gather(maps: torch.Tensor, which: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """``maps[which[i], b, ys[i, m], xs[i, m]]`` for every batch item ``b``: ``[N, B, M]``.

    ``ys, xs`` are ``[N, M]`` pixels (clamped into the image). Flat indexing, so no per-source
    copy of the maps is made.
    """
    _, b, h, w = maps.shape
    pix = ys.clamp(0, h - 1) * w + xs.clamp(0, w - 1)
    rows = which[:, None] * b + torch.arange(b, device=maps.device)[None]  # (N, B)
    return maps.reshape(-1)[rows[..., None] * (h * w) + pix[:, None, :]]


class Peaks(NamedTuple):
    """What :func:`read_peaks` finds for each source and batch item."""

    flow: torch.Tensor  # [N, B, 2] (dx, dy) from the source to the peak
    peak: torch.Tensor  # [N, B] refined peak value
    mass: torch.Tensor  # [N, B] response summed within mass_radius of the peak (inside the window)


def read_peaks(maps: torch.Tensor, which: torch.Tensor, sources: torch.Tensor, max_flow: float,
               refine: str = "gaussian", mass_radius: int = 2) -> Peaks:
    """Peak of each source's response inside its window, with sub-pixel refinement.

    Args:
        maps: ``[n, B, H, W]`` non-negative response maps of ``n`` tangents.
        which: ``[N]`` long, the map (tangent) that holds each source.
        sources: ``[N, 2]`` source points ``(x, y)``.
        max_flow: window half-size per axis: pixels ``q`` with ``|q - p| <= max_flow``.
        refine: "gaussian" (parabola through the log of the argmax and its 4 neighbours, exact
            for a Gaussian peak), "quadratic" (the same on the values), "centroid" (3x3
            centre of mass) or "none".
        mass_radius: half-size of the square around the integer peak whose response is summed
            into ``mass`` (the peak's whole footprint, robust to where the peak falls between pixels).
    Returns:
        :class:`Peaks`; windows with no response give flow 0 and peak 0.
    """
    if refine not in REFINEMENTS:
        raise ConfigError(f"refine must be one of {', '.join(REFINEMENTS)} (got {refine!r})")
    h, w = maps.shape[-2:]
    which = which.to(maps.device)
    src = sources.to(maps.device, torch.float64)
    off = window_offsets(max_flow).to(maps.device)
    anchor = torch.round(src).long()  # (N, 2)
    xs, ys = anchor[:, 0:1] + off, anchor[:, 1:2] + off  # (N, L)
    ok_x = ((xs - src[:, 0:1]).abs() <= max_flow + 1e-9) & (xs >= 0) & (xs < w)
    ok_y = ((ys - src[:, 1:2]).abs() <= max_flow + 1e-9) & (ys >= 0) & (ys < h)
    length = off.numel()
    wy, wx = ys[:, :, None].expand(-1, -1, length), xs[:, None, :].expand(-1, length, -1)
    wy, wx = wy.reshape(len(src), 1, -1), wx.reshape(len(src), 1, -1)  # (N, 1, L*L)
    vals = _gather(maps, which, wy[:, 0], wx[:, 0])  # (N, B, L*L)
    ok = (ok_y[:, :, None] & ok_x[:, None, :]).reshape(len(src), 1, -1)
    vals = torch.where(ok, vals, torch.full_like(vals, -1.0))
    best = vals.argmax(-1)  # (N, B)
    py, px = ys.gather(1, best // length), xs.gather(1, best % length)  # (N, B) integer peak
    near = ((wy - py[..., None]).abs() <= mass_radius) & ((wx - px[..., None]).abs() <= mass_radius)
    mass = torch.where(near & ok, vals, torch.zeros_like(vals)).sum(-1).to(maps.dtype)
    dx, dy, peak = _refine(maps, which, px, py, refine)
    flow = torch.stack([px + dx - src[:, 0:1], py + dy - src[:, 1:2]], -1)
    flow = torch.where((peak <= 0)[..., None], torch.zeros_like(flow), flow)
    return Peaks(flow.to(maps.dtype), peak.clamp(min=0).to(maps.dtype), mass.clamp(min=0))


def _refine(maps: torch.Tensor, which: torch.Tensor, px: torch.Tensor, py: torch.Tensor, refine: str
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sub-pixel offsets ``dx, dy`` and peak value at integer peaks ``(px, py)`` ``[N, B]``."""
    _, _, h, w = maps.shape
    b = px.shape[1]
    rows = which[:, None] * b + torch.arange(b, device=maps.device)[None]
    flat = maps.reshape(-1)

    def at(ddx: int, ddy: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = px + ddx, py + ddy
        inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
        v = flat[rows * (h * w) + y.clamp(0, h - 1) * w + x.clamp(0, w - 1)].to(torch.float64)
        return v, inside

    centre, _ = at(0, 0)
    if refine == "none":
        return torch.zeros_like(centre), torch.zeros_like(centre), centre
    if refine == "centroid":
        total, mx, my = torch.zeros_like(centre), torch.zeros_like(centre), torch.zeros_like(centre)
        for ddy in (-1, 0, 1):
            for ddx in (-1, 0, 1):
                v, inside = at(ddx, ddy)
                v = torch.where(inside, v, torch.zeros_like(v))
                total, mx, my = total + v, mx + v * ddx, my + v * ddy
        total = total.clamp(min=_TINY)
        return mx / total, my / total, centre
    f = (lambda v: torch.log(v.clamp(min=_TINY))) if refine == "gaussian" else (lambda v: v)
    c = f(centre)
    sides = []
    for axis in ((1, 0), (0, 1)):
        (lo, lo_in), (hi, hi_in) = at(-axis[0], -axis[1]), at(axis[0], axis[1])
        sides.append((f(lo), lo_in, f(hi), hi_in))
    # Curvature 2a of the parabola c + b t + a t^2 along each axis, where both neighbours exist.
    curvs = [torch.where(lo_in & hi_in, lo + hi - 2 * c, torch.zeros_like(c)) for lo, lo_in, hi, hi_in in sides]
    offsets, gain = [], torch.zeros_like(c)
    for axis, (lo, lo_in, hi, hi_in) in enumerate(sides):
        curv, other = curvs[axis], curvs[1 - axis]
        slope = (hi - lo) / 2
        t = -slope / curv.clamp(max=-_TINY)
        # At the image border one neighbour is missing: borrow the other axis' curvature (the
        # peak is taken as round) and fit the one-sided parabola, which may put the peak up to
        # MAX_EXTRAPOLATION pixels outside the image (a point leaving the frame).
        edge = (lo_in ^ hi_in) & (other < 0)
        one_sided = torch.where(hi_in, hi - c - other / 2, c - lo + other / 2)  # b of the parabola
        t_edge = (-one_sided / other.clamp(max=-_TINY)).clamp(-MAX_EXTRAPOLATION, MAX_EXTRAPOLATION)
        t_edge = torch.where(hi_in, t_edge.clamp(max=0), t_edge.clamp(min=0))  # only outwards
        inner = lo_in & hi_in & (curv < 0)
        t = torch.where(inner, t.clamp(-0.5, 0.5), torch.where(edge, t_edge, torch.zeros_like(c)))
        t = torch.where(centre > 0, t, torch.zeros_like(c))
        b = torch.where(inner, slope, one_sided)
        a2 = torch.where(inner, curv, other)
        offsets.append(t)
        gain = gain + torch.where((inner | edge) & (centre > 0), b * t + 0.5 * a2 * t * t, torch.zeros_like(c))
    peak = torch.exp(c + gain) if refine == "gaussian" else c + gain
    return offsets[0], offsets[1], torch.where(centre > 0, peak, centre)
