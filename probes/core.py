"""The probe core: packed sources in, peak displacement and response strength out.

:func:`probe` runs the Jacobian engine over the packed Gaussian-bump tangents of some sources,
averages ``|response|`` (summed over channels) over a few random frame-1 masks, and reads each
source's peak in its own window. :func:`grid_probe` does it for a regular grid of sources and
returns dense fields. Everything here is at the model's resolution, in model pixels; the public
functions of :mod:`probes.flow` convert from and to the user's pixels.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from cwm.errors import ConfigError, did_you_mean
from probes import fields
from probes import visibility
from probes.jacobian import (
    DEFAULT_FD_CENTRAL,
    DEFAULT_FD_EPS,
    MODES,
    FrameFunction,
    ProbePredictor,
    auto_chunk_size,
    bump_inside_fraction,
    gaussian_bumps,
    iter_responses,
    predicted_pixels,
    probe_masks,
)
from probes.packing import REFINEMENTS, Packing, check_max_flow, grid_sources, pack_grid, read_peaks, unpacked

#: Default largest flow searched, per axis, as a fraction of the smaller input side. It sets the
#: cost: with one source per 8-pixel patch, 0.06 packs every source of a 64 x 64 frame into one
#: tangent (4 tangents at 128, 16 at 224). On the synthetic suite, whose fastest scenes move 0.12
#: of the side, the exact oracle's EPE is 0.42 / 0.65 px at 64 / 128 with 0.06, and 0.29 / 0.29
#: with 0.12 at 1x / 4x the cost (the ECCV method: 1.49 / 2.83). Pass ``max_flow`` for faster motion.
DEFAULT_MAX_FLOW_FRACTION = 0.06
#: Frame-1 masks averaged per pair, their visible patches disjoint, so that every target is
#: predicted (carries a response) in at least one. Measured with the exact oracle on the synthetic
#: suite (20 scenes, one source per patch, max_flow 0.12): at the default visible fraction one
#: mask gives EPE 0.33 px and occlusion F1 0.69, two give 0.29 px and 0.77, at twice the cost
#: (with visible 0.01, one mask loses less: EPE 0.288, F1 0.75). With one mask, a weak source
#: whose window touches a revealed patch is treated as unknown, not occluded, and takes its
#: neighbours' values.
DEFAULT_NUM_MASKS = 2
#: Fraction of frame-1 patches revealed in each mask (at least one). Measured with the embedded
#: model on the synthetic suite (benchmarks/flow_tune.py --what masks, 20 scenes): EPE falls as
#: more is revealed, 2.91 / 2.87 / 2.77 / 2.66 px at 0.01 / 0.05 / 0.1 / 0.25 (two masks), and
#: 0.25 is inside the range it was trained on. (That model is not yet accurate; the trend is
#: what this default rests on.) An oracle ignores it.
DEFAULT_VISIBLE = 0.25
#: Standard deviation of the Gaussian bump tangent, in model pixels. On the analytic oracle
#: cases (per-pixel sources) 1.0 gives EPE <= 0.07 px on visible pixels and the best occlusion F1;
#: 0.5 and 0.7 fit peaks worse, 1.5 gains 0.02 px of EPE but blurs thin occlusions.
DEFAULT_SIGMA = 1.0
#: The strength of a source's response is its sum within this many bump sigmas (at least one
#: pixel) of the peak: the whole footprint, so it does not depend on where the peak falls
#: between pixels (for a bilinear warp it is the fraction of the source that stays visible).
MASS_RADIUS_SIGMAS = 2.0
#: The finest pyramid level's smaller side, in input pixels (None: the input's own size), for
#: inputs larger than the model (:mod:`probes.pyramid`). Chosen on the real clips of
#: benchmarks/real.py (see benchmarks/RESULTS.md).
DEFAULT_FINEST_SIDE = 256
#: Engine mode of :func:`flow` and :func:`track`: central finite differences, all tangents' +eps
#: and -eps inputs in one batched forward call (:mod:`probes.jacobian`). It reads the same flow
#: as forward mode ("jvp", within 0.05 px) without forward mode's fixed cost per call (about
#: 30 ms on tiny_64 on a CPU: benchmarks/RESULTS.md, "Flow speed against the official method").
DEFAULT_MODE = "fd"


@dataclass(frozen=True)
class EngineOptions:
    """Settings of the Jacobian engine that no change of resolution touches (``sigma`` is in model
    pixels wherever it appears). :class:`ProbeOptions` and :class:`ModelOptions` both carry them;
    :func:`probe` reads only these (see :func:`probes.flow.flow` for their meaning)."""

    num_masks: int = DEFAULT_NUM_MASKS
    visible: float = DEFAULT_VISIBLE
    mode: str = DEFAULT_MODE
    occlusion_threshold: float = visibility.DEFAULT_OCCLUSION_THRESHOLD
    consistency: bool = False
    sigma: float = DEFAULT_SIGMA
    refine: str = "gaussian"
    fill_occluded: bool = True
    seed: int = 0
    chunk_size: int | None = None
    batching: str = "vmap"
    fd_eps: float = DEFAULT_FD_EPS
    fd_central: bool = DEFAULT_FD_CENTRAL
    pack: bool = True


@dataclass(frozen=True)
class ProbeOptions(EngineOptions):
    """Options of :func:`probes.flow.flow` and :func:`probes.flow.track` as the user gives them
    (see :func:`probes.flow.flow` for their meaning). Units: ``max_flow`` in pixels of the
    caller's image (None: :data:`DEFAULT_MAX_FLOW_FRACTION` of its smaller side); ``stride`` and
    ``sigma`` in model pixels (``stride`` None: the patch size); ``finest_side`` and
    ``tile_stride`` in pixels of the input and of a pyramid level. The engine never reads these
    directly: :meth:`resolve` turns them into the :class:`ModelOptions` of one model-sized window.
    """

    stride: int | None = None
    max_flow: float | None = None
    multiscale: bool = True
    finest_side: int | None = DEFAULT_FINEST_SIDE
    tile_stride: int | None = None
    verify: bool = True

    @classmethod
    def from_kwargs(cls, kwargs: dict) -> ProbeOptions:
        """Build from keyword arguments; unknown names raise ConfigError with a hint."""
        known = [f.name for f in dataclasses.fields(cls)]
        for key in kwargs:
            if key not in known:
                raise ConfigError(f"unknown flow option {key!r}" + did_you_mean(key, known))
        opts = cls(**kwargs)
        if opts.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)} (got {opts.mode!r})")
        if opts.refine not in REFINEMENTS:
            raise ConfigError(f"refine must be one of {', '.join(REFINEMENTS)} (got {opts.refine!r})")
        if opts.stride is not None and opts.stride < 1:
            raise ConfigError(f"stride must be >= 1 model pixels (got {opts.stride})")
        if opts.chunk_size is not None and opts.chunk_size < 1:
            raise ConfigError(f"chunk_size must be >= 1 (got {opts.chunk_size})")
        visibility.check_threshold(opts.occlusion_threshold)
        if opts.max_flow is not None:
            check_max_flow(opts.max_flow)
        if opts.finest_side is not None and opts.finest_side < 8:
            raise ConfigError(f"finest_side must be >= 8 pixels or None (got {opts.finest_side})")
        if opts.tile_stride is not None and opts.tile_stride < 1:
            raise ConfigError(f"tile_stride must be >= 1 pixels (got {opts.tile_stride})")
        if not opts.sigma > 0:
            raise ConfigError(f"sigma must be > 0 pixels (got {opts.sigma})")
        return opts

    def resolve(self, predictor: ProbePredictor, size: tuple[int, int]) -> ModelOptions:
        """These options for one model-sized window that stands for ``size = (H, W)`` pixels of
        the caller's image: the whole input, for the single-window probe; the model's own size
        for a tile cut from a pyramid level or an image already at the model's size.

        ``stride`` becomes the patch size when None (one source per patch). ``max_flow`` (None:
        :data:`DEFAULT_MAX_FLOW_FRACTION` of the smaller side of ``size``) is converted to model
        pixels by the larger of the two axis scales, to stay conservative. This is the only place
        where either default is applied and where ``max_flow`` changes unit.
        """
        model = tuple(predictor.size)
        max_flow = DEFAULT_MAX_FLOW_FRACTION * min(size) if self.max_flow is None else self.max_flow
        max_flow = check_max_flow(max_flow) * max(model[0] / size[0], model[1] / size[1])
        engine = {f.name: getattr(self, f.name) for f in dataclasses.fields(EngineOptions)}
        return ModelOptions(stride=self.stride or predictor.patch_size, max_flow=max_flow, **engine)


@dataclass(frozen=True, kw_only=True)
class ModelOptions(EngineOptions):
    """Resolved options of one model-sized window, what :func:`grid_probe` and
    :func:`probes.flow.window_flow` take (build it with :meth:`ProbeOptions.resolve`).

    Attributes:
        stride: source spacing, model pixels (>= 1).
        max_flow: largest displacement searched per axis, model pixels (> 0): sources more than
            ``2 * max_flow`` apart share a tangent, and each peak is read within it.
        (the rest): the :class:`EngineOptions`.
    """

    stride: int
    max_flow: float

    def __post_init__(self) -> None:
        if int(self.stride) != self.stride or self.stride < 1:
            raise ConfigError(f"stride must be an integer >= 1 model pixels (got {self.stride})")
        check_max_flow(self.max_flow)


def _check_model_options(opts) -> None:
    """TypeError unless ``opts`` is a :class:`ModelOptions` (user options must be resolved first)."""
    if not isinstance(opts, ModelOptions):
        raise TypeError(f"expected ModelOptions (model pixels), got {type(opts).__name__}; "
                        "resolve user options first: ProbeOptions.resolve(predictor, size)")


class ProbeOutput(NamedTuple):
    """What :func:`probe` measures, at model resolution."""

    flow: torch.Tensor        # [N, B, 2] (dx, dy) from each source to its response peak
    strength: torch.Tensor    # [N, B] |response| summed around the peak (per unit bump)
    coverage: torch.Tensor | None  # [B, H, W] reverse mode: sum of all |J^T u| over frame 0
    blind: torch.Tensor       # [N, B] bool: the window holds pixels that no mask predicts
    near_unseen: torch.Tensor  # [B, H, W] bool: within max_flow of a pixel that no mask predicts


def probe(predictor: ProbePredictor, frame0: torch.Tensor, frame1: torch.Tensor, packing: Packing, opts: EngineOptions,
          mode: str | None = None, masks: torch.Tensor | None = None) -> ProbeOutput:
    """Peak displacement and strength of every packed source.

    Args:
        frame0, frame1: ``[B, 3, H, W]`` at ``predictor.size``.
        packing: sources and their tangents (points ``(x, y)`` in model pixels); its
            ``max_flow`` (model pixels) is the search window.
        opts: the engine settings (a :class:`ModelOptions` or :class:`ProbeOptions`; lengths
            are taken from ``packing``, not from ``opts``).
        mode: "jvp"/"fd" (bumps on frame 0, peaks in the prediction: forward flow of the
            sources) or "vjp" (bumps on the prediction, peaks in frame 0: backward flow of the
            sources as frame-1 targets); default ``opts.mode``.
        masks: ``[B * opts.num_masks, T*h*w]`` bool (pair-major, True = masked) to use instead
            of the random :func:`probes.jacobian.probe_masks` (e.g. a counterfactual's own mask).
    Returns:
        :class:`ProbeOutput`. Each mask's response counts where that mask predicts the target
        (elsewhere the prediction is frame 1's own pixels, which do not respond), so responses
        are weighted by one over the number of masks predicting each target pixel.
    """
    mode = mode or opts.mode
    b, k, size = frame0.shape[0], opts.num_masks, tuple(frame0.shape[-2:])
    if masks is None:
        masks = probe_masks(b, predictor.num_frames, predictor.grid, k, opts.visible, opts.seed)
    elif tuple(masks.shape) != (b * k, predictor.num_frames * predictor.grid[0] * predictor.grid[1]):
        raise ConfigError(f"masks must be [{b * k}, {predictor.num_frames * predictor.grid[0] * predictor.grid[1]}]"
                          f" (pairs x num_masks, T*h*w); got {tuple(masks.shape)}")
    masks = masks.to(frame0.device)
    fn = FrameFunction(predictor, frame1.repeat_interleave(k, 0), masks)
    count = predicted_pixels(masks, predictor.grid, predictor.patch_size).reshape(b, k, *size).sum(1)
    inverse = 1.0 / count.to(frame0.dtype).clamp(min=1)  # (B, H, W)
    centers, members, pack = torch.from_numpy(packing.sources), packing.members(), torch.from_numpy(packing.pack)
    flows = torch.zeros(len(centers), b, 2, dtype=frame0.dtype)
    strength = torch.zeros(len(centers), b, dtype=frame0.dtype)
    coverage = torch.zeros(b, *size, dtype=frame0.dtype, device=frame0.device) if mode == "vjp" else None
    cot_weight = inverse.repeat_interleave(k, 0)[:, None]  # (B*K, 1, H, W) on the prediction side

    def build(start: int, stop: int) -> torch.Tensor:
        bumps = gaussian_bumps(centers, members[start:stop], size, opts.sigma)[:, None]
        return bumps * cot_weight.to(bumps.dtype).cpu() if mode == "vjp" else bumps

    chunk = opts.chunk_size or auto_chunk_size(predictor)
    for start, resp in iter_responses(fn, frame0.repeat_interleave(k, 0), packing.num_packs, build, mode,
                                      chunk, opts.batching, opts.fd_eps, opts.fd_central):
        n = resp.shape[0]
        mag = resp.abs().sum(2).reshape(n, b, k, *size).sum(2)  # (n, B, H, W)
        if mode == "vjp":
            coverage += mag.sum(0)
        else:
            mag = mag * inverse
        idx = torch.cat(members[start:start + n])
        found = read_peaks(mag, pack[idx] - start, centers[idx], packing.max_flow, opts.refine,
                           mass_radius=math.ceil(MASS_RADIUS_SIGMAS * opts.sigma))
        flows[idx], strength[idx] = found.flow.cpu(), found.mass.cpu()
    strength = strength / bump_inside_fraction(centers, size, opts.sigma).to(strength.dtype)[:, None]
    r = math.ceil(packing.max_flow)
    # Pixels revealed in every mask never respond: note whatever lies within max_flow of one.
    near = F.max_pool2d((count == 0)[:, None].float(), 2 * r + 1, 1, r)[:, 0].cpu() > 0  # (B, H, W)
    px = centers.round().long()
    px[:, 0].clamp_(0, size[1] - 1)
    px[:, 1].clamp_(0, size[0] - 1)
    return ProbeOutput(flows, strength, coverage, near[:, px[:, 1], px[:, 0]].T, near)


def grid_probe(predictor: ProbePredictor, f0: torch.Tensor, f1: torch.Tensor, opts: ModelOptions, mode: str,
               masks: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense field ``[B, H, W, 2]`` ``(dx, dy)`` and visibility score ``[B, H, W]`` at model
    resolution, in model pixels, of ``f0, f1`` (``[B, 3, H, W]`` at ``predictor.size``).

    Sources sit on the :func:`probes.packing.grid_sources` grid of ``opts.stride``, and each
    peak is searched within ``opts.max_flow`` (both model pixels; ``opts`` must be resolved,
    :meth:`ProbeOptions.resolve`). For "jvp"/"fd"
    the field is the forward flow of frame 0 and the score the sources' normalised strength;
    for "vjp" it is the backward flow of frame 1, and the score is the normalised coverage of
    frame 0 (how much predicted content each frame-0 pixel supplies, smoothed over a stride).
    Sources whose strength is below the occlusion threshold get their neighbours' flow when
    ``opts.fill_occluded``. Scores are about 1 where visible and 0 where occluded. ``masks``:
    explicit frame-1 masks, as for :func:`probe`.
    """
    _check_model_options(opts)
    size, stride, max_flow = tuple(f0.shape[-2:]), opts.stride, opts.max_flow
    _, (gh, gw) = grid_sources(size, stride)
    packing = pack_grid((gh, gw), stride, max_flow) if opts.pack else unpacked(grid_sources(size, stride)[0], max_flow)
    out = probe(predictor, f0, f1, packing, opts, mode, masks)
    b = f0.shape[0]
    flow = out.flow.permute(1, 0, 2).reshape(b, gh, gw, 2)
    score = visibility.normalised_scores(out.strength).T.reshape(b, gh, gw)
    weak = score < opts.occlusion_threshold
    # A weak source whose response may have fallen in a patch every mask reveals is unknown, not
    # occluded: it takes its neighbours' score, as it takes their flow.
    unknown = weak & out.blind.T.reshape(b, gh, gw)
    score = fields.fill_holes(score[..., None], ~unknown)[..., 0]
    if opts.fill_occluded:
        flow = fields.fill_holes(flow, ~weak)
    dense = fields.upsample_grid(torch.cat([flow, score[..., None]], -1), stride)
    if mode != "vjp":
        return dense[..., :2], dense[..., 2]
    cover = out.coverage.cpu()[:, None]
    if stride > 1:  # targets sit a stride apart: spread their deposits over a stride
        cover = F.avg_pool2d(cover, 2 * (stride // 2) + 1, 1, stride // 2, count_include_pad=False)
    cover = cover[:, 0] / cover.flatten(1).median(1).values.clamp(min=1e-12)[:, None, None]
    unknown = (cover < opts.occlusion_threshold) & out.near_unseen  # its content may sit in a revealed patch
    return dense[..., :2], fields.fill_holes(cover[..., None], ~unknown)[..., 0]
