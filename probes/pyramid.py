"""Flow at the input's own resolution: a coarse-to-fine pyramid of model-sized tiles.

A CWM is trained at one size (64 x 64 for the embedded model); squashing a 768 x 576 frame to it
shrinks a 4-pixel motion to a third of a pixel, which nothing can read. So, as the field reads
CWMs (Opt-CWM and ZWM zoom in on each query), the probe runs at several scales:

1. Level 0 resizes the pair, keeping its aspect ratio, until the smaller side is the model's.
   Each finer level doubles the scale, up to the finest level (smaller side ``finest_side``
   pixels, or the input's own size).
2. At every level, frame 1 is warped back by the flow found so far, and both frames are cut into
   model-sized tiles (``tile_stride`` apart: by default they abut, the last one flush with the
   edge; on the real clips of benchmarks/real.py abutting tiles read 640x480 pairs in half the
   time of 3/4-overlapping ones with the same photometric error). All tiles go through the
   Jacobian probe of :mod:`probes.flow` in one batch; each tile reads the *residual* motion,
   within the default ``max_flow`` of a tile, and tiles are blended with tent weights where
   they overlap.
3. **Verification** (``verify``, on by default; :func:`verified`): the residual is kept where it
   lowers the local photometric error ``sum_c |frame0 - warp(frame1, flow)|`` (mean over a
   5 x 5 window) against the flow so far. The counterfactual proposes, brightness constancy
   disposes: where the frames already agree (identical frames, a static background) no motion
   is added, and elsewhere a residual that explains nothing is replaced by the verified flow of
   its neighbours. ``verify=False`` gives the raw readout.

The confidence is the probe's normalised peak strength times ``exp(-e / 0.05)``, with ``e`` the
final local photometric error (channels summed, [0, 1] units): high where the response is clear
*and* the flow explains the pixels. Occlusion is the probe's, at the finest level, or the flow
leaving the frame.

Everything here works on torch tensors ``[B, 3, H, W]`` in [0, 1] at the input size; flows are
``[B, H, W, 2]`` ``(dx, dy)`` in pixels of the level they live at. Tiles are cut from a level
without rescaling, so a level pixel is a model pixel: :func:`level_options` resolves the user's
options for the tiles of each level (:meth:`probes.core.ProbeOptions.resolve`).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from cwm.frames import resize
from probes import fields
from probes.core import ModelOptions, ProbeOptions
from probes.jacobian import ProbePredictor, probe_masks

#: The single-window probe, :func:`probes.flow.window_flow`: ``(predictor, f0, f1, opts) ->
#: (flow [N, h, w, 2], confidence [N, h, w], occlusion [N, h, w])`` on model-sized tiles.
WindowFlow = Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]

#: Temperature of the photometric term of the confidence (channel-summed error in [0, 1] units).
CONFIDENCE_ERROR_SCALE = 0.05
#: Window (pixels of a level) over which the photometric error is averaged for verification.
VERIFY_WINDOW = 5
#: Local photometric error (channels summed, [0, 1] units) below which the flow so far counts as
#: explaining a pixel: about the noise of compressed video.
VERIFY_AGREE = 0.05


def level_sizes(size: tuple[int, int], model: tuple[int, int], finest_side: int | None) -> list[tuple[int, int]]:
    """``(H, W)`` of each pyramid level, coarse to fine, for an input of ``size``.

    Level 0's smaller side is the model's smaller side (aspect kept); each next level doubles,
    and the last is capped at ``finest_side`` on the smaller side (or the input size).
    """
    h, w = size
    small = min(h, w)
    top = small if finest_side is None else min(small, int(finest_side))
    base = min(model)
    scales, s = [], base / small
    while True:
        scales.append(min(s, top / small))
        if s * small >= top:
            break
        s *= 2
    out = []
    for s in scales:
        lh, lw = max(model[0], round(h * s)), max(model[1], round(w * s))
        if not out or out[-1] != (lh, lw):
            out.append((lh, lw))
    return out


def tile_origins(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets of tiles of ``tile`` pixels covering ``length`` (the last one flush with the end)."""
    if length <= tile:
        return [0]
    count = math.ceil((length - tile) / stride) + 1
    return sorted({round(i * (length - tile) / (count - 1)) for i in range(count)})


def tent(tile: tuple[int, int], dtype=torch.float32) -> torch.Tensor:
    """``[th, tw]`` blending weights: highest at the tile centre, small but positive at its edges."""
    def one(n: int) -> torch.Tensor:
        x = torch.arange(n, dtype=dtype) + 0.5
        return torch.minimum(x, n - x) / (n / 2)

    return (one(tile[0])[:, None] * one(tile[1])[None, :]).clamp(min=1e-3)


def warp(frames: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """``frames [B, C, H, W]`` sampled at ``x + flow(x)`` (bilinear, edges replicated)."""
    xs, ys = fields.pixel_grid(frames.shape[-2:], flow.dtype, flow.device)
    moved = fields.sample_field(frames.permute(0, 2, 3, 1), xs + flow[..., 0], ys + flow[..., 1])
    return moved.permute(0, 3, 1, 2)


def photometric_error(frame0: torch.Tensor, frame1: torch.Tensor, flow: torch.Tensor,
                      window: int = VERIFY_WINDOW) -> torch.Tensor:
    """``[B, H, W]``: ``sum_c |frame0 - warp(frame1, flow)|``, averaged over a ``window`` square."""
    err = (frame0 - warp(frame1, flow)).abs().sum(1, keepdim=True)
    if window > 1:
        err = F.avg_pool2d(err, window, 1, window // 2, count_include_pad=False)
    return err[:, 0]


def verified(flow: torch.Tensor, candidate: torch.Tensor, before: torch.Tensor, after: torch.Tensor
             ) -> torch.Tensor:
    """The flow after one level's verification (``[B, H, W, 2]``; errors ``[B, H, W]``).

    The candidate is kept where it explains the pixels better than the flow so far. Where it
    does not, and the flow so far already explains them (error below :data:`VERIFY_AGREE`:
    identical frames, a still background), the flow so far stays. Where neither explains them
    (occlusions, a probe miss), the pixel takes the mean of its verified neighbours.
    """
    accept = after < before
    good = accept | (before < VERIFY_AGREE)
    values = torch.where(accept[..., None], candidate, flow)
    filled = fields.fill_holes(values, good)
    return torch.where(good.flatten(1).any(1)[:, None, None, None], filled, values)


def level_options(predictor: ProbePredictor, opts: ProbeOptions, level: int, level_size: tuple[int, int],
                  size: tuple[int, int]) -> ModelOptions:
    """The options of the tiles of one level, in model (= level) pixels.

    Every level searches the residual within the default fraction of a tile
    (:meth:`probes.core.ProbeOptions.resolve` of a model-sized window). At level 0 a user's
    ``max_flow`` (pixels of the input, of ``size``) is scaled to the level (``level_size``) and
    searched instead when it is larger; finer levels only refine the flow so far.
    """
    tile = dataclasses.replace(opts, max_flow=None).resolve(predictor, tuple(predictor.size))
    if level == 0 and opts.max_flow is not None:
        search = max(tile.max_flow, opts.max_flow * min(level_size) / min(size))
        return dataclasses.replace(tile, max_flow=search)
    return tile


def tile_masks(predictor: ProbePredictor, opts: ModelOptions, tiles: int, pairs: int) -> torch.Tensor:
    """Frame-1 masks of ``tiles`` tiles of ``pairs`` pairs, tile-major as the tiles are batched:
    ``[tiles * pairs * opts.num_masks, T*h*w]`` bool, tile ``i`` drawn from seed ``opts.seed + i``
    (:func:`probes.jacobian.probe_masks`; a single tile has the masks of a single window)."""
    return torch.cat([probe_masks(pairs, predictor.num_frames, predictor.grid, opts.num_masks, opts.visible,
                                  opts.seed + i) for i in range(tiles)])


def _probe_tiles(predictor: ProbePredictor, window_flow: WindowFlow, f0: torch.Tensor, f1w: torch.Tensor,
                 opts: ModelOptions, tile_stride: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Residual flow ``[B, H, W, 2]``, confidence and occlusion ``[B, H, W]`` of one level,
    from the probe on model-sized tiles ``tile_stride`` apart (None: abutting), blended with
    tent weights where they overlap.

    Tile ``i`` of the level probes with the masks of seed ``opts.seed + i`` (:func:`tile_masks`):
    different tiles reveal different patches, so the patches no mask predicts (and the probe's
    other mask-dependent errors) do not repeat at the same place in every tile, while a pair's
    tiles do not depend on the other pairs of the batch."""
    b, _, h, w = f0.shape
    th, tw = predictor.size
    stride = tile_stride or min(th, tw)
    boxes = [(y, x) for y in tile_origins(h, th, stride) for x in tile_origins(w, tw, stride)]
    t0 = torch.cat([f0[:, :, y:y + th, x:x + tw] for y, x in boxes])   # (n*B, 3, th, tw), box-major
    t1 = torch.cat([f1w[:, :, y:y + th, x:x + tw] for y, x in boxes])
    masks = tile_masks(predictor, opts, len(boxes), b)
    flow, conf, occ = window_flow(predictor, t0.to(predictor.device), t1.to(predictor.device), opts, masks)
    weight = tent((th, tw), f0.dtype)
    acc = torch.zeros(b, h, w, 4, dtype=f0.dtype)
    norm = torch.zeros(b, h, w, 1, dtype=f0.dtype)
    values = torch.cat([flow.float().cpu(), conf.float().cpu()[..., None], occ.float().cpu()[..., None]], -1)
    for i, (y, x) in enumerate(boxes):
        acc[:, y:y + th, x:x + tw] += values[i * b:(i + 1) * b].to(f0.dtype) * weight[..., None]
        norm[:, y:y + th, x:x + tw] += weight[..., None]
    out = acc / norm
    return out[..., :2], out[..., 2], out[..., 3] >= 0.5


def pyramid_flow(predictor: ProbePredictor, window_flow: WindowFlow, frame0: torch.Tensor, frame1: torch.Tensor,
                 opts: ProbeOptions) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flow ``[B, H, W, 2]`` ``(dx, dy)`` in input pixels, confidence and occlusion ``[B, H, W]``
    at the input size.

    Args:
        window_flow: the single-window probe (:data:`WindowFlow`, :func:`probes.flow.window_flow`).
        frame0, frame1: ``[B, 3, H, W]`` float in [0, 1] at the input size (CPU).
        opts: the user's :class:`probes.core.ProbeOptions` (``finest_side``, ``tile_stride``,
            ``verify``, and the probe's own options, resolved per level by
            :func:`level_options`: ``max_flow``, in input pixels, is the largest motion searched
            at the coarsest level).
    """
    size = tuple(frame0.shape[-2:])
    model = tuple(predictor.size)
    sizes = level_sizes(size, model, opts.finest_side)
    dtype = frame0.dtype
    flow = torch.zeros(frame0.shape[0], *sizes[0], 2, dtype=dtype)
    conf = occ = None
    for level, lsize in enumerate(sizes):
        f0, f1 = resize(frame0, lsize), resize(frame1, lsize)
        flow = fields.resize_flow(flow, lsize)
        tiles = level_options(predictor, opts, level, lsize, size)
        r, conf, occ = _probe_tiles(predictor, window_flow, f0, warp(f1, flow), tiles, opts.tile_stride)
        candidate = flow + r
        if opts.verify:
            before, after = photometric_error(f0, f1, flow), photometric_error(f0, f1, candidate)
            flow = verified(flow, candidate, before, after)
        else:
            flow = candidate
    agreement = torch.exp(-photometric_error(f0, f1, flow) / CONFIDENCE_ERROR_SCALE)
    conf = conf.clamp(0, 1) * agreement
    flow = fields.resize_flow(flow, size)
    conf = fields.resize_scalar(conf, size)
    occ = fields.resize_scalar(occ.to(dtype), size) >= 0.5
    return flow, conf, occ
