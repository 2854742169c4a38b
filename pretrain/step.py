"""One optimizer step's parts, as the loop builds them: precision, AdamW and its parameter groups,
the attention kernel per device and precision, and :func:`setup_for_training`.

    from pretrain.step import adamw, param_groups, setup_for_training
    setup_for_training(model, "cpu", "bf16")
    opt = adamw(param_groups(model, 0.05), 1e-4, (0.9, 0.95))
"""
from __future__ import annotations

from typing import Any

import torch


def resolve_precision(name: str, cpu: bool = False) -> str:
    """``"auto"``: bf16 on GPUs that support it, fp32 elsewhere; other names pass through."""
    if name != "auto":
        return name
    return "bf16" if not cpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on tensors with >= 2 dimensions only (not biases or norms)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def adamw(groups: list[dict[str, Any]], lr: float, betas: tuple[float, float],
          fused: bool = True) -> torch.optim.AdamW:
    """AdamW, fused (one kernel for all tensors, CPU and CUDA; about 3x faster than the default
    per-tensor loop on a CPU, the same update to rounding) where ``fused`` and torch has it."""
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused or None)
    except (RuntimeError, TypeError, ValueError):  # a torch or device without the fused kernel
        return torch.optim.AdamW(groups, lr=lr, betas=betas)


def attention_for(model: torch.nn.Module, device_type: str, precision: str) -> None:
    """On a CPU under bf16, attention as explicit matmuls: PyTorch's fused CPU attention kernel is
    slower in bf16 than the bf16 matmuls (a 64 px step: 548 vs 381 ms forward+backward). fp32 and
    GPUs keep the fused kernel; the model's values are unchanged either way (to rounding)."""
    if device_type == "cpu" and precision == "bf16":
        for m in model.modules():
            if hasattr(m, "fused_attn"):
                m.fused_attn = False


def setup_for_training(model: torch.nn.Module, device_type: str, precision: str) -> None:
    """Make ``model`` (a :class:`cwm.model.CWM`) train fast, with the same values: attention per
    :func:`attention_for`, and ``skip_unused_rows`` on (in training mode the patch embedding of
    masked tokens and the last decoder block's work on visible rows, which the loss never reads,
    are skipped; eval mode is unchanged)."""
    attention_for(model, device_type, precision)
    if hasattr(model, "skip_unused_rows"):
        model.skip_unused_rows = True
