"""Analytic oracle predictors: exact answers for testing the probes without a trained network.

A :class:`WarpOracle` has the probe attributes of :class:`cwm.predictor.CWMPredictor`
(``predict_fn``, ``size``, ``patch_size``, ``grid``, ``num_frames``, ``device``). Its "prediction"
of the last frame is the context frame warped by a known field, so its Jacobian is known exactly:
a bump on frame 0 at ``p`` reappears in the prediction at ``p + flow(p)``, and not at all where
``p`` is occluded. Like the model, it copies the visible patches of the last frame from its input.

Cases bundle an oracle with frames and ground truth (:class:`OracleCase`): translation, rotation,
layered translating discs (two objects over a moving background), and any scene of
:mod:`cwm.synthetic`. Conventions: ``(x, y) = (column, row)`` pixels, flows ``[H, W, 2]``
float32 ``(dx, dy)``, occlusion True where a frame-0 pixel is not visible in frame 1 (covered or
out of frame).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cwm.errors import InputError
from cwm.synthetic import render
from probes.fields import invert_flow, pixel_grid
from probes.jacobian import predicted_pixels

#: Side of the coarsest cells of the random test texture, in pixels.
TEXTURE_CELL = 8
#: A context pixel counts as hidden by an oracle when less than half of it reaches the prediction.
COVERAGE_OCCLUDED = 0.5
_HALF = 0.5  # frame edge sits half a pixel outside the outer pixel centres


def _as_field(a, name: str, channels: int | None) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(a), dtype=torch.float64)
    if (channels and (t.ndim != 3 or t.shape[-1] != channels)) or (not channels and t.ndim != 2):
        raise InputError(f"{name}: expected [H, W{', ' + str(channels) if channels else ''}] (got {tuple(t.shape)})")
    return t


def _bilinear_taps(sx: torch.Tensor, sy: torch.Tensor, size: tuple[int, int]
                   ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The 4 (flat index ``[H*W]``, weight ``[H*W]``) taps of bilinear sampling at ``(sx, sy)``,
    zero outside the image."""
    h, w = size
    x0, y0 = sx.floor(), sy.floor()
    taps = []
    for dx in (0, 1):
        for dy in (0, 1):
            cx, cy = x0 + dx, y0 + dy
            wgt = (1 - (sx - cx).abs()) * (1 - (sy - cy).abs())
            inside = (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)
            idx = (cy.clamp(0, h - 1) * w + cx.clamp(0, w - 1)).long().flatten()
            taps.append((idx, torch.where(inside, wgt, torch.zeros_like(wgt)).flatten()))
    return taps


class WarpOracle:
    """Predicted last frame = context frame sampled at ``x + backward_flow(x)`` (bilinear).

    Args:
        backward_flow: ``[H, W, 2]`` for every pixel ``x`` of the predicted frame, where its
            content sits in the context frame (frame 0), as ``(dx, dy)``.
        occluder: ``[H, W]`` bool, predicted pixels whose content does not come from the context
            frame (they show the input's last frame instead, so they do not respond to frame 0).
            Pixels that sample outside the context frame are added to it.
        patch_size: patch side of the simulated model; ``H`` and ``W`` must be multiples of it.
        num_frames: clip length T; frames 0..T-2 are context (their mean is warped).
    """

    def __init__(self, backward_flow, occluder=None, patch_size: int = 8, num_frames: int = 2):
        back = _as_field(backward_flow, "backward_flow", 2)
        h, w = back.shape[:2]
        if h % patch_size or w % patch_size:
            raise InputError(f"oracle size {w}x{h} is not divisible by patch_size {patch_size}")
        xs, ys = pixel_grid((h, w))
        sx, sy = xs + back[..., 0], ys + back[..., 1]
        outside = (sx < -_HALF) | (sx > w - _HALF) | (sy < -_HALF) | (sy > h - _HALF)
        occ = outside if occluder is None else outside | _as_field(occluder, "occluder", None).bool()
        self.size, self.patch_size, self.num_frames = (h, w), patch_size, num_frames
        self.grid = (h // patch_size, w // patch_size)
        self.device = torch.device("cpu")
        self.backward_flow, self.occluder = back.float(), occ
        self._taps = _bilinear_taps(sx, sy, (h, w))

    def coverage(self) -> torch.Tensor:
        """``[H, W]`` how much of each context pixel the prediction draws on (the bilinear weights
        it receives from non-occluder pixels): about 1 where it stays visible, 0 where hidden."""
        h, w = self.size
        keep = (~self.occluder).flatten().double()
        cov = torch.zeros(h * w, dtype=torch.float64)
        for idx, wgt in self._taps:
            cov.index_add_(0, idx, wgt * keep)
        return cov.reshape(h, w)

    def occlusion(self, threshold: float = COVERAGE_OCCLUDED) -> np.ndarray:
        """``[H, W]`` bool: context pixels whose coverage is below ``threshold`` -- what this
        oracle actually hides (the bilinear warp blurs a geometric occlusion by up to a pixel)."""
        return (self.coverage() < threshold).numpy()

    @classmethod
    def from_flow(cls, flow, occluder=None, **kwargs) -> WarpOracle:
        """An oracle whose forward flow is ``flow [H, W, 2]`` (smooth; see :func:`probes.fields.invert_flow`)."""
        return cls(invert_flow(_as_field(flow, "flow", 2)), occluder, **kwargs)

    def predict_fn(self, video: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``video [B, 3, T, H, W]``, ``mask [B, T*h*w]`` -> predicted last frame ``[B, 3, H, W]``."""
        context, last = video[:, :, :-1].mean(2), video[:, :, -1]
        flat = context.flatten(2)  # (B, 3, H*W)
        # Bilinear sampling written as gathers, which forward-mode AD and vmap both support.
        warped = sum(flat[..., idx.to(video.device)] * wgt.to(video.device, video.dtype) for idx, wgt in self._taps)
        warped = warped.reshape(last.shape)
        keep = self.occluder.to(video.device)[None, None] | ~predicted_pixels(mask, self.grid, self.patch_size)[:, None]
        return torch.where(keep, last, warped)


@dataclass
class OracleCase:
    """An oracle with its frames and exact answers.

    Attributes:
        name: what the case is.
        frame0, frame1: uint8 ``[H, W, 3]`` RGB.
        oracle: the :class:`WarpOracle` that predicts frame 1 from frame 0.
        flow: ``[H, W, 2]`` float32 forward flow of frame 0.
        occlusion: ``[H, W]`` bool, frame-0 pixels not visible in frame 1.
    """

    name: str
    frame0: np.ndarray
    frame1: np.ndarray
    oracle: WarpOracle
    flow: np.ndarray
    occlusion: np.ndarray


def texture(size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A smooth random RGB texture, uint8 ``[H, W, 3]`` (frame content for the analytic cases)."""
    h, w = size
    g = torch.Generator().manual_seed(seed)
    out = torch.zeros(1, 3, h, w, dtype=torch.float64)
    for cell in (TEXTURE_CELL, TEXTURE_CELL // 2, 2 * TEXTURE_CELL):
        coarse = torch.rand(1, 3, -(-h // cell) + 1, -(-w // cell) + 1, generator=g, dtype=torch.float64)
        out += F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
    out = (out - out.min()) / (out.max() - out.min())
    return (out[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def _case(name: str, frame0: np.ndarray, back: torch.Tensor, occluder, flow: torch.Tensor,
          occlusion: torch.Tensor, patch_size: int) -> OracleCase:
    oracle = WarpOracle(back, occluder, patch_size=patch_size)
    f0 = torch.from_numpy(frame0).permute(2, 0, 1)[None].double() / 255
    other = torch.from_numpy(texture(frame0.shape[:2], seed=1)).permute(2, 0, 1)[None].double() / 255
    everything = torch.ones(1, 2 * oracle.grid[0] * oracle.grid[1], dtype=torch.bool)
    everything[:, : oracle.grid[0] * oracle.grid[1]] = False
    f1 = oracle.predict_fn(torch.stack([f0, other], 2), everything)  # occluded parts show `other`
    frame1 = (f1[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
    return OracleCase(name, frame0, frame1, oracle, flow.float().numpy(), occlusion.numpy())


def _outside(xs: torch.Tensor, ys: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    h, w = size
    return (xs < -_HALF) | (xs >= w - _HALF) | (ys < -_HALF) | (ys >= h - _HALF)


def translation_case(size=(64, 64), shift=(3.3, -2.2), patch_size: int = 8, seed: int = 0) -> OracleCase:
    """Everything moves by ``shift = (dx, dy)``; pixels leaving the frame are occluded."""
    xs, ys = pixel_grid(size)
    d = torch.tensor(shift, dtype=torch.float64).expand(*size, 2)
    occ = _outside(xs + shift[0], ys + shift[1], size)
    return _case(f"translation {shift}", texture(size, seed), -d, None, d, occ, patch_size)


def rotation_case(size=(64, 64), degrees: float = 6.0, patch_size: int = 8, seed: int = 0) -> OracleCase:
    """Rotation by ``degrees`` (clockwise on screen, y down) about the image centre."""
    xs, ys = pixel_grid(size)
    cx, cy = (size[1] - 1) / 2, (size[0] - 1) / 2
    a = math.radians(degrees)

    def rotate(x, y, angle):
        c, s = math.cos(angle), math.sin(angle)
        return cx + c * (x - cx) - s * (y - cy), cy + s * (x - cx) + c * (y - cy)

    fx, fy = rotate(xs, ys, a)
    bx, by = rotate(xs, ys, -a)
    flow = torch.stack([fx - xs, fy - ys], -1)
    back = torch.stack([bx - xs, by - ys], -1)
    return _case(f"rotation {degrees} deg", texture(size, seed), back, None, flow, _outside(fx, fy, size),
                 patch_size)


Disc = tuple[tuple[float, float], float, tuple[float, float]]  # ((cx, cy), radius, (dx, dy))


def layered_case(size=(64, 64), background=(1.0, 0.5), discs: Sequence[Disc] = (
        ((22.0, 24.0), 10.0, (4.0, 1.0)), ((42.0, 40.0), 9.0, (-3.0, -2.5))),
        patch_size: int = 8, seed: int = 0) -> OracleCase:
    """Translating opaque discs over a translating background, later discs in front.

    The default is the two-object scene: two discs moving against each other over a background
    that moves too, with occlusions at both discs' leading edges and where pixels leave the frame.
    """
    xs, ys = pixel_grid(size)
    moves = [torch.tensor(background, dtype=torch.float64)] + [torch.tensor(d[2], dtype=torch.float64)
                                                               for d in discs]

    def layer_at(x, y, t):  # index of the nearest layer covering (x, y) at time t
        index = torch.zeros(x.shape, dtype=torch.long)
        for k, (centre, radius, move) in enumerate(discs, start=1):
            cx, cy = centre[0] + t * move[0], centre[1] + t * move[1]
            index[(x - cx) ** 2 + (y - cy) ** 2 <= radius ** 2] = k
        return index

    def motion(index):
        return torch.stack(moves)[index]  # (H, W, 2)

    flow = motion(layer_at(xs, ys, 0))
    occ = (layer_at(xs + flow[..., 0], ys + flow[..., 1], 1) > layer_at(xs, ys, 0)) | \
        _outside(xs + flow[..., 0], ys + flow[..., 1], size)
    at1 = layer_at(xs, ys, 1)
    back = -motion(at1)
    disoccluded = layer_at(xs + back[..., 0], ys + back[..., 1], 0) > at1  # hidden in frame 0
    return _case(f"layered, {len(discs)} discs", texture(size, seed), back, disoccluded, flow, occ,
                 patch_size)


def scene_case(scene, patch_size: int = 8) -> OracleCase:
    """The oracle of a :mod:`cwm.synthetic` scene (its first pair): exact backward sampling
    field and disocclusions, from rendering the scene with time reversed."""
    spec = scene.spec
    layers = tuple(dataclasses.replace(layer, motion=layer.motion[1::-1]) for layer in spec.layers)
    reverse = render(dataclasses.replace(spec, layers=layers, noise=0.0))
    oracle = WarpOracle(reverse.flow[0], reverse.occlusion[0], patch_size=patch_size)
    return OracleCase(f"scene {scene.seed}", scene.frames[0], scene.frames[1], oracle,
                      scene.flow[0], scene.occlusion[0])


def reverse_oracle(case: OracleCase, patch_size: int = 8) -> WarpOracle:
    """The oracle of the time-reversed pair (predicts frame 0 from frame 1), as the official
    ECCV Jacobian method uses: it samples frame 1 at ``x + flow(x)``, occluded pixels excepted."""
    return WarpOracle(case.flow, case.occlusion, patch_size=patch_size)
