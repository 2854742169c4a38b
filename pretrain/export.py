"""Export training checkpoints to our weights format (``model.safetensors`` + ``config.json``).

The result is what ``cwm.load(folder)`` reads. Export works from any checkpoint of a run, at any
time (also while the run is still training), with nothing but the checkpoint folder::

    python -m pretrain export RUN_OR_CHECKPOINT [--out FOLDER]
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from cwm.checkpoints import save_pretrained
from cwm.config import CWMConfig
from cwm.errors import WeightsError
from cwm.model import build_model
from pretrain.checkpointing import TrainingError, read_meta, resolve_checkpoint

_STRIP = ("module.", "_orig_mod.")  # DDP and torch.compile wrappers


def load_checkpoint_weights(ckpt: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The model state dict stored by ``accelerator.save_state`` in a checkpoint folder."""
    ckpt = Path(ckpt)
    if (ckpt / "model.safetensors").is_file():
        from safetensors.torch import load_file

        sd = load_file(str(ckpt / "model.safetensors"))
    elif (ckpt / "pytorch_model.bin").is_file():
        sd = torch.load(ckpt / "pytorch_model.bin", map_location="cpu", weights_only=True)
    elif any(p.name.startswith("pytorch_model_fsdp") for p in ckpt.iterdir()):
        raise TrainingError(f"'{ckpt}' holds sharded FSDP weights; merge them first with "
                            f"`accelerate merge-weights {ckpt}/pytorch_model_fsdp_0 MERGED` and export "
                            "that folder's model.safetensors, or set FSDP's state_dict_type to FULL_STATE_DICT")
    else:
        raise TrainingError(f"no model weights (model.safetensors) in checkpoint '{ckpt}'")
    out = {}
    for k, v in sd.items():
        for prefix in _STRIP:
            k = k[len(prefix):] if k.startswith(prefix) else k
        out[k] = v
    return out


def training_meta(config: dict[str, Any], step: int, source: str | os.PathLike) -> dict[str, Any]:
    """The ``training`` block of the exported config.json: where the weights came from."""
    data, train = config.get("data", {}), config.get("train", {})
    return {"step": step, "source": str(Path(source).resolve()), "data": data.get("source"),
            "scene_preset": data.get("scene_preset") if data.get("source") == "synthetic" else None,
            "gap_frames": data.get("gap_frames"), "gap_ms": data.get("gap_ms"),
            "mask_ratio": train.get("mask_ratio"), "batch_size": train.get("batch_size"),
            "mixed_precision": train.get("mixed_precision"), "trainer": "cwm pretrain"}


def export_state_dict(state_dict: dict[str, torch.Tensor], model_cfg: CWMConfig, out: str | os.PathLike,
                      training: dict[str, Any] | None = None) -> Path:
    """Strictly load ``state_dict`` into a fresh model and write it with :func:`cwm.save_pretrained`."""
    model = build_model(model_cfg)
    missing, unexpected = sorted(set(model.state_dict()) - set(state_dict)), sorted(set(state_dict) - set(model.state_dict()))
    if missing or unexpected:
        raise WeightsError(f"checkpoint does not match the model config: missing {missing[:5]}, "
                           f"unexpected {unexpected[:5]}")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()})
    return save_pretrained(model, out, training=training)


def export_checkpoint(path: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Export a checkpoint (or a run folder's newest checkpoint) to a weights folder.

    Args:
        path: ``RUN/checkpoints/step_N`` or ``RUN``.
        out: destination folder; default ``RUN/export-step_N``.
    Returns:
        the weights folder, loadable with ``cwm.load``.
    """
    ckpt = resolve_checkpoint(path)
    meta = read_meta(ckpt)
    model_cfg = CWMConfig.from_dict(meta["model"])
    out = Path(out) if out is not None else ckpt.parent.parent / f"export-{ckpt.name}"
    training = training_meta(meta.get("config", {}), meta["step"], ckpt)
    return export_state_dict(load_checkpoint_weights(ckpt), model_cfg, out, training)
