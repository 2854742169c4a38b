"""Optical flow, occlusion and point tracking as Jacobian counterfactuals (docs/design.md §4).

A small Gaussian bump on frame 0 at a source ``p`` changes the predicted frame 1 most at
``p + flow(p)``. The probe puts bumps on a grid of sources, packs sources that cannot confuse
each other into one tangent (:mod:`probes.packing`), computes all responses with the Jacobian
engine (:mod:`probes.jacobian`), averages ``|response|`` summed over channels over a few random
frame-1 masks, and reads each source's peak in its own window with sub-pixel refinement. A weak
peak means ``p`` is occluded in frame 1 (:mod:`probes.occlusion`).

>>> result = flow(predictor, frame0, frame1)        # uint8 [H, W, 3] RGB in, FlowResult out
>>> result.flow.shape, result.occlusion.shape        # ((H, W, 2), (H, W)) at the input size
>>> tracks = track(predictor, frame0, frame1, [(40, 30), (12, 50)])

``predictor`` is anything with the probe attributes of :class:`cwm.predictor.CWMPredictor`
(``predict_fn``, ``size``, ``patch_size``, ``grid``, ``num_frames``, ``device``). Inputs are
resized to ``predictor.size``; flows, points and ``max_flow`` are in the input's pixels.
Batched inputs (``[B, H, W, 3]`` or ``[B, 3, H, W]``) give a list of results, one per pair.
"""
from __future__ import annotations

import numpy as np
import torch

from cwm.errors import ConfigError, InputError
from cwm.frames import Batch, check_points, resize, scale_points, to_tensor_pair
from probes import fields, pyramid
from probes import visibility
from probes.core import DEFAULT_MAX_FLOW_FRACTION, ProbeOptions, grid_probe, probe
from probes.packing import check_max_flow, pack_points, unpacked
from probes.results import FlowResult, TrackResult


def _input_pair(frame0, frame1) -> tuple[torch.Tensor, torch.Tensor, Batch]:
    """Validated frames at the input size ``[B, 3, H, W]`` (float32, or float64 when given so),
    and the input layout."""
    for name, frame in (("frame0", frame0), ("frame1", frame1)):
        if isinstance(frame, np.ndarray) and frame.dtype.kind == "f" and not np.isfinite(frame).all():
            raise InputError(f"{name}: contains NaN or inf values")
    f0, f1, batch = to_tensor_pair(frame0, frame1)
    dtype = f0.dtype if f0.dtype == torch.float64 else torch.float32
    return f0.to(dtype), f1.to(dtype), batch


def _pair(predictor, frame0, frame1) -> tuple[torch.Tensor, torch.Tensor, Batch]:
    """Validated frames at the model's size ``[B, 3, h, w]`` on its device, and the input layout."""
    f0, f1, batch = _input_pair(frame0, frame1)
    size = tuple(predictor.size)
    return resize(f0, size).to(predictor.device), resize(f1, size).to(predictor.device), batch


def _model_max_flow(max_flow: float | None, user: tuple[int, int], model: tuple[int, int]) -> float:
    """``max_flow`` in model pixels (the larger axis scale, to stay conservative)."""
    if max_flow is None:
        max_flow = DEFAULT_MAX_FLOW_FRACTION * min(user)
    return check_max_flow(max_flow) * max(model[0] / user[0], model[1] / user[1])


def _leaves_frame(flow: torch.Tensor) -> torch.Tensor:
    """``[B, H, W]`` True where ``x + flow(x)`` is outside the frame (the pixel edges, as in
    :mod:`cwm.synthetic`): such points are occluded in frame 1."""
    h, w = flow.shape[1:3]
    xs, ys = fields.pixel_grid((h, w), flow.dtype, flow.device)
    ex, ey = xs + flow[..., 0], ys + flow[..., 1]
    return (ex < -0.5) | (ex >= w - 0.5) | (ey < -0.5) | (ey >= h - 0.5)


def window_flow(predictor, f0: torch.Tensor, f1: torch.Tensor, stride: int, max_flow: float,
                opts: ProbeOptions, masks: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The probe on one model-sized window per pair: forward flow ``[B, H, W, 2]``, confidence
    and occlusion ``[B, H, W]``, all at model resolution and in model pixels.

    Args:
        f0, f1: ``[B, 3, H, W]`` at ``predictor.size`` on its device.
        stride: source spacing in model pixels; ``max_flow`` in model pixels.
        masks: explicit frame-1 masks ``[B * opts.num_masks, T*h*w]`` instead of random ones.
    """
    if opts.mode == "vjp":
        back, score = grid_probe(predictor, f0, f1, stride, max_flow, opts, "vjp", masks)
        forward = fields.invert_flow(back)
    else:
        forward, score = grid_probe(predictor, f0, f1, stride, max_flow, opts, opts.mode, masks)
    occluded = (score < opts.occlusion_threshold) | _leaves_frame(forward)
    if opts.consistency:  # the other direction, by the other autograd mode
        if opts.mode == "vjp":
            forward_jvp, _ = grid_probe(predictor, f0, f1, stride, max_flow, opts, "jvp", masks)
        else:
            forward_jvp = forward
            back, _ = grid_probe(predictor, f0, f1, stride, max_flow, opts, "vjp", masks)
        for i in range(forward.shape[0]):
            fb = visibility.consistency_occlusion(forward_jvp[i].float().numpy(), back[i].float().numpy())
            occluded[i] |= torch.from_numpy(fb)
    return forward, score.clamp(0, 1), occluded


def flow(predictor, frame0, frame1, **options) -> FlowResult | list[FlowResult]:
    """Dense forward optical flow and occlusion of frame 0 by Jacobian counterfactuals.

    Args:
        predictor: a :class:`cwm.predictor.CWMPredictor` or any object with its probe attributes.
        frame0, frame1: images of the same size (see :mod:`cwm.frames`); batches allowed.
        stride: source spacing in model pixels (must divide the model size); default the patch
            size (one source per patch, upsampled bilinearly); 1 gives per-pixel sources.
        max_flow: largest displacement searched, per axis, in input pixels; default
            :data:`probes.core.DEFAULT_MAX_FLOW_FRACTION` (0.06) of the smaller side. Sources
            more than ``2 * max_flow`` apart share a tangent, so this sets the cost; larger
            motions alias (are read at a neighbour's peak).
        num_masks, visible: frame-1 masks averaged (:data:`probes.core.DEFAULT_NUM_MASKS`, 2)
            and the fraction of patches each reveals (:data:`probes.core.DEFAULT_VISIBLE`, 0.25).
        mode: "fd" (default, :data:`probes.core.DEFAULT_MODE`: central finite differences, the
            +eps and -eps inputs of all tangents in one batched forward call per chunk, no
            autograd), "jvp" (forward mode: the same reading, within 0.05 px, at a fixed cost
            per call) or "vjp" (reverse mode: backward flow of frame 1, inverted; occlusion by
            coverage).
        occlusion_threshold: occluded where strength / typical strength is below it
            (:data:`probes.visibility.DEFAULT_OCCLUSION_THRESHOLD`, 0.5), or where the flow
            leaves the frame.
        consistency: also mark pixels that fail the forward-backward check (costs a reverse-mode
            pass in addition).
        sigma: bump standard deviation in model pixels (:data:`probes.core.DEFAULT_SIGMA`, 1).
        refine: sub-pixel peak fit, "gaussian" (default), "quadratic", "centroid" or "none".
        fill_occluded: give occluded sources their neighbours' flow (default True).
        seed: seed of the random masks.
        chunk_size: most tangents x batch items per engine call, which bounds memory; default
            :func:`probes.jacobian.auto_chunk_size` (from the model's token count).
        batching: "vmap" (default) or "batch", how forward-mode tangents are batched. Measured
            interleaved on the loaded 2-core CPU (benchmarks/RESULTS.md, "Flow speed against the
            official method"): equal within noise at 64 and 128 px and on 49 tiles; vmap pays a
            fixed cost per call and less per tangent (tiny_64: ~41 ms + 24 ms/tangent against
            ~56 ms/tangent), so it stays the default.
        fd_eps, fd_central: finite-difference step (:data:`probes.jacobian.DEFAULT_FD_EPS`, 0.01
            intensity units at the bump's peak) and central differences (default True; False
            adds one base pass and uses one-sided differences), for mode "fd".
        pack: share tangents between distant sources (default True; False runs one source per
            tangent, the unpacked baseline).
        multiscale: read the flow at the input's own scale with :mod:`probes.pyramid` (default
            True): overlapping model-sized tiles, coarse to fine, aspect ratio kept. False
            resizes the pair to the model's size and probes it once (the single-window probe;
            also what ``mode="vjp"`` and ``consistency`` use).
        finest_side: the finest pyramid level's smaller side in input pixels
            (:data:`probes.core.DEFAULT_FINEST_SIDE`, 256), None for the input's own size.
        tile_stride: tile spacing in pyramid pixels (default the model's side: abutting tiles).
        verify: keep a residual only where it lowers the local photometric error (default
            True; see :mod:`probes.pyramid`); False gives the raw counterfactual reading.
    Returns:
        A :class:`probes.results.FlowResult` at the input size, or a list of them for a batch.
    Raises:
        InputError: frames of different sizes, NaN or inf values, unreadable inputs.
        ConfigError: bad options (``max_flow <= 0``, unknown names, out-of-range values).
    """
    opts = ProbeOptions.from_kwargs(options)
    if opts.multiscale and opts.mode != "vjp" and not opts.consistency:
        f0, f1, batch = _input_pair(frame0, frame1)
        forward, confidence, occluded = pyramid.pyramid_flow(predictor, window_flow, f0.cpu(), f1.cpu(), opts,
                                                             opts.max_flow)
        occluded = occluded | _leaves_frame(forward)
    else:
        f0, f1, batch = _pair(predictor, frame0, frame1)
        model = tuple(predictor.size)
        stride = opts.stride or predictor.patch_size
        max_flow = _model_max_flow(opts.max_flow, batch.size, model)
        forward, confidence, occluded = window_flow(predictor, f0, f1, stride, max_flow, opts)
        forward = fields.resize_flow(forward.float().cpu(), batch.size)
        confidence = fields.resize_scalar(confidence.float().cpu(), batch.size)
        occluded = fields.resize_scalar(occluded.float().cpu(), batch.size) >= 0.5
    forward, confidence = forward.float(), confidence.float()
    results = [FlowResult(forward[i].numpy(), occluded[i].numpy(), confidence[i].numpy())
               for i in range(forward.shape[0])]
    return results if batch.batched else results[0]


def _reference_points(size: tuple[int, int], max_flow: float) -> np.ndarray:
    """One tangent's worth of lattice points (spacing just over ``2 * max_flow``), whose peaks
    give the typical response that normalises the query points' scores."""
    step = int(np.floor(2 * max_flow)) + 1
    ys, xs = np.meshgrid(np.arange(step // 2, size[0], step), np.arange(step // 2, size[1], step), indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64)


def track(predictor, frame0, frame1, points, reference: bool = True, **options) -> TrackResult | list[TrackResult]:
    """Where query points of frame 0 are in frame 1 (sparse flow), and whether they stay visible.

    Args:
        predictor, frame0, frame1: as for :func:`flow`.
        points: ``[N, 2]`` query points ``(x, y)`` in input pixels, the same for every pair.
        reference: add one tangent of lattice points whose median strength is the typical
            response (otherwise the median over the query points is used, which needs most of
            them visible).
        **options: as for :func:`flow`; ``mode`` is "fd" (default) or "jvp" (``stride``,
            ``fill_occluded`` and ``consistency`` do not apply).
    Returns:
        A :class:`probes.results.TrackResult`, or a list of them for a batch. A point is not
        visible when its strength is below ``occlusion_threshold`` or its track leaves the frame.
    """
    opts = ProbeOptions.from_kwargs(options)
    if opts.mode == "vjp":
        raise ConfigError("track follows points forwards: use mode 'jvp' or 'fd'")
    f0, f1, batch = _pair(predictor, frame0, frame1)
    model = tuple(predictor.size)
    pts = check_points(points, batch.size)
    if len(pts) == 0:
        raise InputError("points: need at least one (x, y) point")
    max_flow = _model_max_flow(opts.max_flow, batch.size, model)
    query = scale_points(pts, batch.size, model)
    refs = _reference_points(model, max_flow) if reference else np.zeros((0, 2))
    sources = np.concatenate([refs, query])
    packing = pack_points(sources, max_flow) if opts.pack else unpacked(sources, max_flow)
    found = probe(predictor, f0, f1, packing, opts)
    typical = found.strength[: len(refs)] if reference else found.strength[len(refs):]
    score = found.strength[len(refs):] / typical.median(0, keepdim=True).values.clamp(min=1e-12)  # (N, B)
    results = []
    for i in range(f0.shape[0]):
        moved = query + found.flow[len(refs):, i].double().numpy()
        h, w = model
        inside = (moved[:, 0] >= -0.5) & (moved[:, 0] < w - 0.5) & (moved[:, 1] >= -0.5) & (moved[:, 1] < h - 0.5)
        visible = (score[:, i] >= opts.occlusion_threshold).numpy() & inside
        results.append(TrackResult(pts.astype(np.float32), scale_points(moved, model, batch.size).astype(np.float32),
                                   visible, score[:, i].clamp(0, 1).float().numpy()))
    return results if batch.batched else results[0]
