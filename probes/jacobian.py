"""The Jacobian engine: how the predicted last frame responds to tangents on frame 0 (docs/design.md §4).

Let ``F(frame0)`` be the predicted last frame, with frame 1's visible patches and the mask held
fixed (:class:`FrameFunction`). The engine computes, for many tangents at once:

- **forward mode** (``"jvp"``): ``J v`` for tangents ``v`` on frame 0, one ``torch.func.jvp``
  per chunk, the tangents batched through ``vmap`` (the primal pass is shared) or along the
  batch dimension;
- **reverse mode** (``"vjp"``): ``J^T u`` for cotangents ``u`` on the predicted frame, one
  forward pass for all chunks and the cotangents batched through ``vmap``;
- **finite differences** (``"fd"``, the default of :func:`probes.flow.flow`): the central
  difference ``(F(x + eps v) - F(x - eps v)) / (2 eps)`` (or the one-sided one), plain forward
  passes with no autograd: the ``+eps`` and ``-eps`` inputs of every tangent of a chunk go
  through the model in ONE batched call (no separate base pass), on the fused attention kernel.
  Forward mode pays a fixed cost per call (the primal pass and functorch's decompositions,
  about 30 ms on tiny_64 on a CPU) that a batched forward does not, so "fd" is the cheapest
  dense read; it agrees with "jvp" to well under 0.05 px of flow (tests/test_fd_engine.py).

All three return response maps ``[P, B, 3, H, W]`` for ``P`` tangents on a batch of ``B``
frames. Work is cut into chunks of at most ``chunk_size`` tangent items (tangents times batch)
to bound memory. The engine only needs an object with the predictor's probe attributes
(:class:`ProbePredictor`: ``predict_fn``, ``size``, ``patch_size``, ``grid``, ``num_frames``,
``device``), so analytic oracles (:mod:`probes.oracles`) stand in for a network in tests.
"""
from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator
from typing import Protocol

import torch
import torch.autograd.forward_ad as fwAD

from cwm.errors import ConfigError
from cwm.masking import last_frame_mask
from cwm.model import math_attention

class ProbePredictor(Protocol):
    """What the probes use of a predictor: :class:`cwm.predictor.CWMPredictor`, or any stand-in
    with these attributes (:class:`probes.oracles.WarpOracle`)."""

    size: tuple[int, int]     # (H, W) the model sees, in model pixels
    patch_size: int           # patch side, model pixels
    grid: tuple[int, int]     # (h, w) patches at ``size``
    num_frames: int           # clip length T
    device: torch.device

    def predict_fn(self, video: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The predicted last frame ``[B, 3, H, W]`` of ``video [B, 3, T, H, W]`` in [0, 1] under
        ``mask [B, T*h*w]`` (True = masked), differentiable in ``video``."""


#: Automatic chunking: tangent items per engine call = AUTO_CHUNK_TOKEN_ITEMS / tokens, between 1
#: and MAX_AUTO_CHUNK, for a model of ``tokens = num_frames * h * w`` tokens. Forward mode through
#: a ViT on CPU holds about 0.3-0.45 MB per token per item (measured: 0.15 GB per item for
#: small_128, 512 tokens; 0.7 GB for the ViT-B/8 shape at 224 x 224, 1568 tokens, where 4 items
#: per call peak at 4.0 GB resident in all: benchmarks/flow_speed.py --memory).
AUTO_CHUNK_TOKEN_ITEMS = 6400
MAX_AUTO_CHUNK = 64
#: Step of the finite-difference mode, in intensity units of [0, 1] images times the tangent
#: (a bump of peak 1 changes frame 0 by at most 0.01). With central differences the truncation
#: error is O(eps^2) of the response's curvature, and float32 rounding of the prediction
#: (~1e-7 relative) is amplified by 1 / (2 eps) = 50: both far below what moves a peak.
DEFAULT_FD_EPS = 1e-2
#: Whether "fd" uses central differences by default (two forwards per tangent, in one call).
DEFAULT_FD_CENTRAL = True
MODES = ("jvp", "vjp", "fd")
BATCHING = ("vmap", "batch")

TangentBuilder = Callable[[int, int], torch.Tensor]


class FrameFunction:
    """The predicted last frame as a differentiable function of frame 0.

    ``fn(frame0 [B, 3, H, W]) -> [B, 3, H, W]``: every context frame (0..T-2) receives ``frame0``,
    so a perturbation of frame 0 perturbs all of them together, as a repeated-frame model expects.

    Args:
        predictor: anything with ``predict_fn(video [B, 3, T, H, W], mask [B, T*h*w])`` and
            ``num_frames``.
        frame1: ``[B, 3, H, W]`` the last frame (its visible patches are the only part used).
        mask: ``[B, T*h*w]`` bool, True = masked (predicted).
    """

    def __init__(self, predictor: ProbePredictor, frame1: torch.Tensor, mask: torch.Tensor) -> None:
        self.predictor, self.frame1, self.mask = predictor, frame1, mask

    def __call__(self, frame0: torch.Tensor) -> torch.Tensor:
        frames = [frame0] * (self.predictor.num_frames - 1) + [self.frame1.to(frame0.dtype)]
        return self.predictor.predict_fn(torch.stack(frames, dim=2), self.mask)

    def tile(self, n: int) -> FrameFunction:
        """The same function on ``n`` stacked copies of the batch (``[n*B, ...]``, copy-major)."""
        if n == 1:
            return self
        return FrameFunction(self.predictor, self.frame1.repeat(n, 1, 1, 1), self.mask.repeat(n, 1))


def auto_chunk_size(predictor: ProbePredictor) -> int:
    """Tangent items per engine call for ``predictor`` (see :data:`AUTO_CHUNK_TOKEN_ITEMS`), or
    its own ``probe_chunk_size`` attribute when it has one (an analytic oracle, whose cost is
    per call rather than per item, prefers large batches)."""
    preferred = getattr(predictor, "probe_chunk_size", None)
    if preferred:
        return int(preferred)
    tokens = predictor.num_frames * predictor.grid[0] * predictor.grid[1]
    return int(min(MAX_AUTO_CHUNK, max(1, AUTO_CHUNK_TOKEN_ITEMS // tokens)))


def probe_masks(batch: int, num_frames: int, grid: tuple[int, int], num_masks: int, visible: float,
                seed: int = 0) -> torch.Tensor:
    """``num_masks`` frame-1 masks per pair, their visible patches disjoint where there is room.

    Disjoint visible sets mean every patch is predicted (carries a response) in at least
    ``num_masks - 1`` of them. Returns bool ``[batch * num_masks, T*h*w]`` (pair-major), True =
    masked; each mask reveals ``max(1, round(visible * h*w))`` last-frame patches. Every pair's
    masks are drawn from ``seed`` alone (the same for all pairs), so a pair gets the same masks
    whatever its position in a batch, and a batch reads exactly as its pairs read one by one.
    """
    if num_masks < 1:
        raise ConfigError(f"num_masks must be >= 1 (got {num_masks})")
    if not 0.0 < visible < 1.0:
        raise ConfigError(f"visible must be in (0, 1) (got {visible})")
    n = grid[0] * grid[1]
    count = max(1, round(visible * n))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    one = torch.ones(num_masks, n, dtype=torch.bool)
    for k in range(num_masks):
        one[k, order[(torch.arange(count) + k * count) % n]] = False
    return last_frame_mask(one.repeat(batch, 1), num_frames)


def predicted_pixels(mask: torch.Tensor, grid: tuple[int, int], patch_size: int) -> torch.Tensor:
    """Pixels whose prediction depends on frame 0: ``[B, H, W]`` bool from a mask ``[B, T*h*w]``."""
    h, w = grid
    last = mask[:, -h * w:].reshape(-1, h, w)
    return last.repeat_interleave(patch_size, 1).repeat_interleave(patch_size, 2)


def gaussian_bumps(centers: torch.Tensor, members: list[torch.Tensor], size: tuple[int, int],
                   sigma: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Tangents made of Gaussian bumps: ``[len(members), 3, H, W]``, the same in all channels.

    Args:
        centers: ``[N, 2]`` bump centres ``(x, y)`` in pixels (pixel centres at integers).
        members: for each tangent, the indices of the centres it holds.
        size: ``(H, W)``.
        sigma: bump standard deviation in pixels; the peak value is 1.
    """
    h, w = size
    longest = max(len(m) for m in members)
    index = torch.zeros(len(members), longest, dtype=torch.long)
    valid = torch.zeros(len(members), longest, dtype=torch.float64)
    for i, m in enumerate(members):  # pad every tangent's member list to the longest
        index[i, :len(m)], valid[i, :len(m)] = m, 1.0
    c = centers.to(torch.float64)[index]  # (P, M, 2)
    gx = torch.exp(-0.5 * ((torch.arange(w, dtype=torch.float64) - c[..., :1]) / sigma) ** 2)  # (P, M, W)
    gy = torch.exp(-0.5 * ((torch.arange(h, dtype=torch.float64) - c[..., 1:]) / sigma) ** 2)  # (P, M, H)
    # A sum of separable bumps: gy^T @ gx adds the outer products of each tangent's members.
    maps = torch.bmm((gy * valid[..., None]).transpose(1, 2), gx)  # (P, H, W)
    return maps.to(dtype)[:, None].expand(-1, 3, -1, -1)


def bump_inside_fraction(centers: torch.Tensor, size: tuple[int, int], sigma: float) -> torch.Tensor:
    """``[N]`` the fraction of each bump of :func:`gaussian_bumps` that lies inside the image
    (bumps near the border are cut off, and their responses are weaker by this factor)."""
    h, w = size
    centers = centers.to(torch.float64)
    reach = math.ceil(6 * sigma)

    def fraction(c: torch.Tensor, n: int) -> torch.Tensor:
        grid = torch.arange(-reach, n + reach, dtype=torch.float64)[None]
        g = torch.exp(-0.5 * ((grid - c[:, None]) / sigma) ** 2)
        inside = (grid >= 0) & (grid < n)
        return (g * inside).sum(1) / g.sum(1)

    return fraction(centers[:, 0], w) * fraction(centers[:, 1], h)


def jvp_chunk(fn: FrameFunction, primal: torch.Tensor, tangents: torch.Tensor, batching: str) -> torch.Tensor:
    """``J v`` for tangents ``[n, B, 3, H, W]`` -> ``[n, B, 3, H, W]`` by forward mode: one of
    the engine's two per-chunk primitives (:func:`iter_responses` calls it by its module name, so
    a wrapper set on the module, e.g. a benchmark's call counter, sees every call)."""
    n = tangents.shape[0]
    if batching == "vmap" and n > 1:
        # Unbatched primal under vmap: the primal pass runs once, only tangents are batched.
        return torch.func.vmap(lambda t: torch.func.jvp(fn, (primal,), (t,))[1])(tangents)
    # One tangent per item of the (repeated) batch: dual numbers, the lightest forward-mode API.
    tiled, x = fn.tile(n), primal.repeat(n, 1, 1, 1)
    with fwAD.dual_level():
        out = fwAD.unpack_dual(tiled(fwAD.make_dual(x, tangents.reshape(x.shape)))).tangent
    return out.reshape(tangents.shape)


def fd_chunk(fn: FrameFunction, primal: torch.Tensor, base: torch.Tensor | None, tangents: torch.Tensor,
              eps: float) -> torch.Tensor:
    """Finite differences for tangents ``[n, B, 3, H, W]`` -> ``[n, B, 3, H, W]`` (the other
    per-chunk primitive, as :func:`jvp_chunk`); ``base`` is
    ``F(primal)`` (one-sided) or None (central: the ``+eps`` and ``-eps`` inputs of all ``n``
    tangents stacked into one forward call of ``2 n B`` items)."""
    n = tangents.shape[0]
    step = eps * tangents.reshape(-1, *primal.shape[1:])
    x = primal.repeat(n, 1, 1, 1)
    if base is None:
        out = fn.tile(2 * n)(torch.cat([x + step, x - step]))
        diff = (out[:len(x)] - out[len(x):]) / (2 * eps)
    else:
        diff = (fn.tile(n)(x + step) - base.repeat(n, 1, 1, 1)) / eps
    return diff.reshape(tangents.shape)


def iter_responses(fn: FrameFunction, primal: torch.Tensor, count: int, build: TangentBuilder,
                   mode: str = "jvp", chunk_size: int = MAX_AUTO_CHUNK, batching: str = "vmap",
                   fd_eps: float = DEFAULT_FD_EPS, fd_central: bool = DEFAULT_FD_CENTRAL
                   ) -> Iterator[tuple[int, torch.Tensor]]:
    """Response maps for ``count`` tangents, chunk by chunk.

    Args:
        fn: the function of frame 0 (:class:`FrameFunction`).
        primal: ``[B, 3, H, W]`` frame 0.
        count: number of tangents ``P``.
        build: ``build(start, stop)`` -> tangents ``[stop - start, B or 1, 3, H, W]`` (on frame 0
            for "jvp"/"fd"; cotangents on the predicted frame for "vjp"). Built lazily so that
            only one chunk of tangents is in memory.
        mode: "jvp", "vjp" or "fd".
        chunk_size: most tangent items (tangents x B) per call (a central "fd" call runs two
            forward items per tangent item, without autograd's memory).
        batching: "vmap" (tangents batched by ``torch.func.vmap``) or "batch" (primal repeated
            along the batch dimension); "fd" always uses the batch dimension.
        fd_eps, fd_central: finite-difference step and whether to use central differences.
    Forward mode ("jvp") runs attention on the math backend (the fused kernel has no
    forward-mode rule), as does "vjp"; "fd" keeps the fused kernel.
    Yields:
        ``(start, responses [n, B, 3, H, W])`` for consecutive chunks.
    """
    _check_engine_args(mode, batching, chunk_size, fd_eps)
    b = primal.shape[0]
    per_call = max(1, chunk_size // b)
    attention = contextlib.nullcontext() if mode == "fd" else math_attention()
    with attention, warnings.catch_warnings():
        # vmap has no batching rule for the masked_scatter in CWM.predict_frame and says so on
        # every call (its per-item fallback is a small share of the cost); torch's lazily loaded
        # forward-mode decompositions still use torch.jit.script and warn about it.
        warnings.filterwarnings("ignore", message=".*batching rule for aten::masked_scatter")
        warnings.filterwarnings("ignore", message=".*torch.jit.script. is deprecated")
        if mode == "vjp":
            _, vjp_fn = torch.func.vjp(fn, primal)  # one forward pass serves every chunk
        base = None
        if mode == "fd" and not fd_central:
            with torch.no_grad():
                base = fn(primal)
        for start in range(0, count, per_call):
            stop = min(count, start + per_call)
            tangents = build(start, stop).to(primal.device, primal.dtype).expand(-1, b, -1, -1, -1).contiguous()
            if mode == "jvp":
                with torch.no_grad():  # forward mode needs no reverse-mode graph (10-30% faster)
                    out = jvp_chunk(fn, primal, tangents, batching)
            elif mode == "vjp":
                out = torch.func.vmap(vjp_fn)(tangents)[0]
            else:
                with torch.no_grad():
                    out = fd_chunk(fn, primal, base, tangents, fd_eps)
            yield start, out.detach()


def responses(fn: FrameFunction, primal: torch.Tensor, tangents: torch.Tensor, mode: str = "jvp",
              **kwargs) -> torch.Tensor:
    """All response maps at once: tangents ``[P, B or 1, 3, H, W]`` -> ``[P, B, 3, H, W]``.

    Keyword arguments are those of :func:`iter_responses`.
    """
    if tangents.ndim == 4:
        tangents = tangents[:, None]
    chunks = [r for _, r in iter_responses(fn, primal, tangents.shape[0],
                                           lambda i, j: tangents[i:j], mode, **kwargs)]
    return torch.cat(chunks)


def _check_engine_args(mode: str, batching: str, chunk_size: int, fd_eps: float) -> None:
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)} (got {mode!r})")
    if batching not in BATCHING:
        raise ConfigError(f"batching must be one of {', '.join(BATCHING)} (got {batching!r})")
    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be >= 1 (got {chunk_size})")
    if not fd_eps > 0:
        raise ConfigError(f"fd_eps must be > 0 (got {fd_eps})")
