"""Reference flow methods that benchmarks/flow_speed.py compares the packed JVP probe against.

``official_style_flow`` reproduces the ECCV 2024 Jacobian flow (neuroailab/cwm_dynamics,
``DerivativeFlowGenerator`` as called by ``get_flow_jacobian_method``): the frames are fed in
reverse order (frame 1 is the context, frame 0 the predicted frame), every frame-1 patch is
visible (mask ratio 0) and the visible set is split into 5 partitions, one mask each. For each
mask, ``torch.autograd.functional.jacobian(..., vectorize=False)`` takes one reverse pass per
masked target patch of the patch-averaged, channel-summed prediction, with respect to a
per-patch constant perturbation of the input. The source patch with the largest (ReLU) response
is where the target came from; flows are averaged over the masks where the target was predicted,
in whole patches, and repeated over each patch's pixels.

Passes, as the official defaults (``num_samples=5``, ``mask_ratio=0``, ``vectorize=False``): 5
forward passes (one per partition) and one reverse pass per (partition, target patch) = 4 of 5
patches per partition, so ``4 * h * w`` reverse passes in all (256 at 64 px with 8-px patches,
1024 at 128, 3136 at 224). The official perturbation is one constant per (frame, channel, patch);
here it is one per (frame, patch), broadcast over the channels: its gradient is the official's
summed over channels, which is what the official aggregation (ReLU of the channel sum) reads, and
a reverse pass costs the same either way. Ties of the maximum response are averaged (the
official ``jac == jac.amax()`` centroid), not broken by the first index.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from cwm.frames import resize, to_tensor_pair
from cwm.masking import last_frame_mask, partition_last_frame
from probes import fields

#: Mask partitions of the ECCV method (``num_samples=5``).
OFFICIAL_PARTITIONS = 5


def official_style_flow(predictor, frame0, frame1, partitions: int = OFFICIAL_PARTITIONS, seed: int = 0
                        ) -> tuple[torch.Tensor, dict]:
    """Forward flow ``[H, W, 2]`` (input pixels) by the ECCV method, and pass counts.

    Returns ``(flow, {"forward_passes", "reverse_passes"})``.
    """
    f0, f1, batch = to_tensor_pair(frame0, frame1)
    size, p, (gh, gw) = tuple(predictor.size), predictor.patch_size, predictor.grid
    dtype = torch.float64 if f0.dtype == torch.float64 else torch.float32
    f0, f1 = (resize(f, size).to(predictor.device, dtype) for f in (f0, f1))
    t = predictor.num_frames
    video = torch.stack([f1] * (t - 1) + [f0], 2)  # reversed: predict frame 0 from frame 1
    n = gh * gw
    parts = partition_last_frame(partitions, (gh, gw), seed)  # the official partitions of the visible frame
    total, count = torch.zeros(n, 2, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
    reverse = 0
    for s in range(partitions):
        last = ~parts[s]  # partition s visible, the other 4 of 5 patches are targets
        mask = last_frame_mask(last[None], t).to(predictor.device)
        targets = last.nonzero()[:, 0]

        def func(y: torch.Tensor, mask: torch.Tensor = mask, targets: torch.Tensor = targets) -> torch.Tensor:
            pert = y.repeat_interleave(p, -2).repeat_interleave(p, -1)[:, None]  # (1, 1, T, H, W)
            pred = predictor.predict_fn(video + pert, mask)  # (1, 3, H, W)
            agg = pred.reshape(1, 3, gh, p, gw, p).mean((3, 5)).sum(1)  # (1, gh, gw)
            return agg.reshape(-1)[targets.to(pred.device)]

        y = torch.zeros(1, t, gh, gw, dtype=dtype, device=predictor.device)
        # Reverse mode runs through the fused attention kernel, as the official code does.
        jac = torch.autograd.functional.jacobian(func, y, vectorize=False)  # (n_t, 1, T, gh, gw)
        reverse += len(targets)
        response = F.relu(jac[:, 0, 0].reshape(len(targets), n))  # w.r.t. the context frame
        peak = (response == response.amax(1, keepdim=True)).double().cpu()  # ties: their centroid
        peak = peak / peak.sum(1, keepdim=True)
        cols, rows = torch.arange(n) % gw, torch.arange(n) // gw
        src_x, src_y = peak @ cols.double(), peak @ rows.double()
        offset = torch.stack([src_x - targets % gw, src_y - targets // gw], 1) * p
        total[targets] += offset
        count[targets] += 1
    grid = (total / count.clamp(min=1)[:, None]).reshape(1, gh, gw, 2)
    dense = grid.repeat_interleave(p, 1).repeat_interleave(p, 2)  # as the official code upsamples
    flow = fields.resize_flow(dense, batch.size)[0].float()
    return flow, {"forward_passes": partitions, "reverse_passes": reverse}
