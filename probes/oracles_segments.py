"""Analytic oracle predictors for the segment and depth probes (exact answers, no training).

Each oracle has the probe attributes of :class:`cwm.predictor.CWMPredictor` (``predict_fn``,
``size``, ``patch_size``, ``grid``, ``num_frames``, ``device``), so every probe runs on it
unchanged, and each is differentiable in both frames with forward- and reverse-mode autograd
(no ``grid_sample``, which has no forward-mode rule).

- :class:`RigidObjectsOracle` knows frame 0's instance map. It reads each revealed frame-1 patch as
  evidence of where that patch came from (best integer match in frame 0, refined by one
  differentiable Lucas-Kanade step), gives each object the mean displacement of its evidence
  (no evidence: static), and renders frame 1 by moving every object rigidly. A poke at any pixel
  of object k therefore moves exactly object k, including all its disconnected parts.
- :class:`SplatOracle` moves every pixel of frame 0 by a known flow (forward bilinear splatting):
  with a stereo flow ``(-c / depth, 0)`` its disparity is proportional to inverse depth.

Like the model, both show the revealed frame-1 patches unchanged in their prediction.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from cwm.errors import InputError
from cwm.masking import patchify, unpatchify


def _shift_whole(img: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """``img [B, C, H, W]`` moved by whole pixels ``d [B, 2]`` (border-replicated): a gather."""
    b, c, h, w = img.shape
    d = d.long()
    rows = (torch.arange(h, device=img.device)[None] - d[:, 1:2]).clamp(0, h - 1)  # (B, H)
    cols = (torch.arange(w, device=img.device)[None] - d[:, 0:1]).clamp(0, w - 1)  # (B, W)
    idx = (rows[:, :, None] * w + cols[:, None, :]).reshape(b, 1, h * w).expand(b, c, h * w)
    return torch.gather(img.reshape(b, c, h * w), 2, idx).reshape(b, c, h, w)


class _OracleBase:
    """Shared probe attributes: model size = the instance/flow map's size."""

    num_frames = 2
    #: Items per batched probe call (:func:`probes.jacobian.auto_chunk_size`): an oracle's cost
    #: is mostly per call, so it takes larger batches than a ViT of the same token count.
    probe_chunk_size = 64

    def __init__(self, size: tuple[int, int], patch_size: int, device: str | torch.device = "cpu"):
        h, w = size
        if h % patch_size or w % patch_size:
            raise InputError(f"oracle size {size} must be divisible by patch_size {patch_size}")
        self.size = (h, w)
        self.patch_size = patch_size
        self.grid = (h // patch_size, w // patch_size)
        self.device = torch.device(device)

    def _keep_revealed(self, pred: torch.Tensor, frame1: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Like the model, show the revealed frame-1 patches as they are (so they do not respond
        to frame 0): ``pred``, ``frame1 [B, 3, H, W]``, ``mask [B, T*h*w]`` True = masked."""
        (gh, gw), p = self.grid, self.patch_size
        shown = ~mask[:, -gh * gw:].to(pred.device).reshape(-1, 1, gh, gw)
        shown = shown.repeat_interleave(p, 2).repeat_interleave(p, 3)
        return torch.where(shown, frame1.to(pred.dtype), pred)


class RigidObjectsOracle(_OracleBase):
    """Moves whole objects rigidly by the displacement their revealed frame-1 patches show.

    Args:
        instances: ``[H, W]`` int ids of frame 0 at the oracle's size (0 = background, which is
            one more rigid object).
        patch_size: patch side; ``H`` and ``W`` must be multiples.
        max_disp: largest displacement searched per axis, in pixels.
        match_tol: a revealed patch counts as evidence only if its best match's mean squared
            error (RGB in [0, 1]) is below this; patches that straddle differently moving
            objects, or show the uniform fill of a vacated area, match nothing and are ignored.
    Vacated areas are filled with frame 0's mean colour. Objects drawn later cover earlier ones:
    static objects first, then moving ones, each in ascending id.
    """

    def __init__(self, instances: np.ndarray, patch_size: int = 4, max_disp: int = 8,
                 match_tol: float = 1e-4, device: str | torch.device = "cpu"):
        inst = np.asarray(instances)
        super().__init__(inst.shape, patch_size, device)
        self.ids = np.unique(inst)
        self.index = torch.from_numpy(np.searchsorted(self.ids, inst)).long().to(self.device)
        self.max_disp, self.match_tol = int(max_disp), float(match_tol)

    def predict_fn(self, video: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``video [B, 3, T, H, W]``, ``mask [B, T*h*w]`` (True = masked) -> ``[B, 3, H, W]``."""
        f0, f1 = video[:, :, 0], video[:, :, -1]
        b, k = f0.shape[0], len(self.ids)
        n = self.grid[0] * self.grid[1]
        item, patch = torch.nonzero(~mask[:, -n:].to(f0.device), as_tuple=True)
        disp = f0.new_zeros(b * k, 2)
        if len(item):
            d, obj, ok = self._evidence(f0, f1, item, patch)
            slot = (item * k + obj)[ok]
            total = f0.new_zeros(b * k, 2).index_add(0, slot, d[ok])
            count = f0.new_zeros(b * k).index_add(0, slot, torch.ones_like(slot, dtype=f0.dtype))
            disp = total / count.clamp(min=1)[:, None]
        return self._keep_revealed(self._render(f0, disp.reshape(b, k, 2)), f1, mask)

    def _render(self, f0: torch.Tensor, disp: torch.Tensor) -> torch.Tensor:
        """Frame 0 with object ``o`` moved by ``disp[:, o]`` (``[B, K, 2]``), z-ordered (see class doc).

        Each move is the whole-pixel shift plus a first-order step for the rest: exact in value
        at the whole-pixel displacements exact matches give, with the central-difference
        derivative in ``disp`` (as :func:`probes.segments.shift_image`), and much cheaper.
        """
        b, k = disp.shape[:2]
        pred = f0.detach().mean(dim=(2, 3), keepdim=True).expand_as(f0)  # fill of vacated areas
        zbuf = torch.full((b, 1, *self.size), -1.0, device=f0.device)
        whole = torch.round(disp.detach())  # (B, K, 2)
        moving = (whole.abs().sum(2) > 0).float()
        for o in range(k):
            here = (self.index == o).to(f0.dtype)[None, None].expand(b, 1, -1, -1)
            cover = _shift_whole(here, whole[:, o]) > 0.5  # (B, 1, H, W)
            z = (moving[:, o] * k + o).view(b, 1, 1, 1)
            on_top = cover & (z > zbuf)
            base = _shift_whole(f0, whole[:, o])
            gy, gx = torch.gradient(base, dim=(2, 3))
            rest = (disp[:, o] - whole[:, o]).to(f0.dtype)  # (B, 2), about 0 for exact matches
            moved = base - gx * rest[:, 0, None, None, None] - gy * rest[:, 1, None, None, None]
            pred = torch.where(on_top, moved, pred)
            zbuf = torch.where(on_top, z.expand_as(zbuf), zbuf)
        return pred

    def _evidence(self, f0: torch.Tensor, f1: torch.Tensor, item: torch.Tensor, patch: torch.Tensor):
        """Per revealed patch ``(item, patch)``: displacement ``[V, 2]``, object ``[V]``, trusted ``[V]``."""
        p, r, gw = self.patch_size, self.max_disp, self.grid[1]
        pad0 = F.pad(f0, (r,) * 4, mode="replicate")  # (B, 3, H+2r, W+2r)
        target = patchify(f1, p)[item, patch]  # (V, p*p*3), (row, col, channel) order
        top, left = patch // gw * p, patch % gw * p  # search-window origins in padded coordinates
        span = torch.arange(p + 2 * r, device=f0.device)
        v, n = len(item), 2 * r + 1
        with torch.no_grad():  # the integer match only selects; the LK step below carries the derivative
            region = pad0.detach()[item[:, None, None], :, (top[:, None] + span)[:, :, None],
                                   (left[:, None] + span)[:, None, :]].permute(0, 3, 1, 2)  # (V, 3, p+2r, p+2r)
            kernel = unpatchify(target.detach()[:, None], p, (1, 1))  # (V, 3, p, p)
            # Mean squared error against every window, summed directly over the p*p kernel taps
            # (an exact match gives exactly 0, so float32 suffices; a grouped conv with one group
            # per patch was ~20x slower with two threads on a loaded CPU).
            errors = f0.new_zeros(v, n, n)
            for a in range(p):
                for b in range(p):
                    errors += (region[:, :, a:a + n, b:b + n] - kernel[:, :, a:a + 1, b:b + 1]).square().sum(1)
            best_err, best = (errors / (3 * p * p)).reshape(v, -1).min(dim=1)
        oy, ox = best // (2 * r + 1), best % (2 * r + 1)
        d_int = torch.stack([r - ox, r - oy], 1).to(f0.dtype)  # source box = patch box - d
        # One Lucas-Kanade step from the integer match: zero at an exact match, but it makes the
        # displacement (and so the prediction) differentiable in the revealed pixels.
        local = torch.arange(p, device=f0.device)
        src_rows = (top + oy)[:, None, None] + local[None, :, None]  # (V, p, 1)
        src_cols = (left + ox)[:, None, None] + local[None, None, :]  # (V, 1, p)
        gy, gx = torch.gradient(pad0, dim=(2, 3))

        def take(t: torch.Tensor) -> torch.Tensor:  # (B, C, Hp, Wp) -> (V, p*p*C), (row, col, ch)
            return t[item[:, None, None], :, src_rows, src_cols].reshape(len(item), -1)

        src = take(pad0)
        grad = torch.stack([take(gx), take(gy)], -1)  # (V, p*p*3, 2)
        gtg = grad.mT @ grad + 1e-6 * torch.eye(2, dtype=f0.dtype, device=f0.device)
        step = -torch.linalg.solve(gtg, grad.mT @ (target - src)[..., None])[..., 0]
        inst = F.pad(self.index[None, None].float(), (r,) * 4, mode="replicate")[0, 0].long()
        votes = F.one_hot(inst[src_rows, src_cols].reshape(len(item), -1), len(self.ids)).sum(1)
        return d_int + step, votes.argmax(1), best_err < self.match_tol


class SplatOracle(_OracleBase):
    """Frame 1 = frame 0 with every pixel moved by a known flow (forward bilinear splatting).

    The prediction is linear in frame 0 and ignores frame 1 (except for the revealed patches, shown
    as they are), so the response to a bump at ``q`` peaks exactly at ``q + flow(q)`` wherever
    that is predicted: the flow probes read the given flow back.

    Args:
        flow: ``[H, W, 2]`` float ``(dx, dy)`` at the oracle's size.
    """

    def __init__(self, flow: np.ndarray, patch_size: int = 4, device: str | torch.device = "cpu"):
        flow = np.asarray(flow, dtype=np.float32)
        super().__init__(flow.shape[:2], patch_size, device)
        h, w = self.size
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        tx, ty = xs + flow[..., 0], ys + flow[..., 1]
        x0, y0 = np.floor(tx), np.floor(ty)
        idx, wts = [], []
        for ox, oy in ((0, 0), (1, 0), (0, 1), (1, 1)):
            xi, yi = x0 + ox, y0 + oy
            wt = (1 - np.abs(tx - xi)) * (1 - np.abs(ty - yi))
            inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
            idx.append(np.where(inside, yi * w + xi, 0).astype(np.int64).ravel())
            wts.append(np.where(inside, wt, 0).astype(np.float32).ravel())
        self._idx = torch.from_numpy(np.concatenate(idx)).to(self.device)
        self._wts = torch.from_numpy(np.concatenate(wts)).to(self.device)

    def predict_fn(self, video: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``video [B, 3, T, H, W]`` -> frame 0 splatted along the flow ``[B, 3, H, W]``."""
        f0 = video[:, :, 0]
        b, c, h, w = f0.shape
        src = f0.reshape(b, c, h * w).repeat(1, 1, 4) * self._wts.to(f0.dtype)
        out = f0.new_zeros(b, c, h * w).index_add(2, self._idx, src)
        return self._keep_revealed(out.reshape(b, c, h, w), video[:, :, -1], mask)
