"""Held-out scoring and the running meters of the training loop."""
from __future__ import annotations

import torch

from pretrain.objective import masked_mse, masked_targets, mask_from_noise, pick_positions, to_model_input


class Evaluator:
    """Scores a fixed held-out batch with and without visible last-frame patches.

    The gap between the two shows whether the model uses the visible patches (docs/design.md §8);
    the copy-frame-0 baseline predicts each masked patch by frame 0's patch at the same place.
    All three are computed on the same masked positions.
    """

    def __init__(self, batch: dict[str, torch.Tensor], model_cfg, ratio: float, device):
        self.cfg, self.device = model_cfg, device
        mean, std = torch.tensor(model_cfg.mean), torch.tensor(model_cfg.std)
        self.x, rgb = to_model_input(batch["video"], mean, std)
        t = model_cfg.num_frames
        self.mask = mask_from_noise(batch["noise"], t, ratio)
        self.mask_all = mask_from_noise(batch["noise"], t, None)
        self.target = masked_targets(rgb[:, :, -1], self.mask, model_cfg.patch_size)
        self.copy_frame0 = masked_mse(masked_targets(rgb[:, :, 0], self.mask, model_cfg.patch_size), self.target).item()

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module) -> dict[str, float]:
        was_training = model.training
        model.eval()
        x, mask, mask_all = (t.to(self.device) for t in (self.x, self.mask, self.mask_all))
        target = self.target.to(self.device)
        pred = model(x, mask)
        pred_none = pick_positions(model(x, mask_all), mask_all, mask)
        model.train(was_training)
        return {"eval/loss_visible": masked_mse(pred, target).item(),
                "eval/loss_no_visible": masked_mse(pred_none, target).item(),
                "eval/copy_frame0": self.copy_frame0}


class Meter:
    """Loss, throughput and data-wait share over a window of optimizer steps."""

    def __init__(self):
        self.reset()
        self.total_time = self.total_data = 0.0
        self.total_steps = 0

    def reset(self) -> None:
        self.losses, self.time, self.data, self.steps = [], 0.0, 0.0, 0

    def add(self, loss: float, step_time: float, data_time: float, timed: bool) -> None:
        self.losses.append(loss)
        self.time += step_time
        self.data += data_time
        self.steps += 1
        if timed:
            self.total_time += step_time
            self.total_data += data_time
            self.total_steps += 1

    @property
    def loss(self) -> float:
        return sum(self.losses) / max(1, len(self.losses))
