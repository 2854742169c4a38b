"""The dataset and sampler a pretraining run uses: video folders, synthetic scenes or photos.

Every clip is named by ``(seed, epoch, index)`` (see :mod:`pretrain.clips` for the keys and what
an item holds), so one process and many see the same clips and a resumed run sees what the
uninterrupted one would have. The parts: :mod:`pretrain.clips` (keys, sampler, crops, synthetic
and photo clips) and :mod:`pretrain.videos` (video folders); the names of both are re-exported here.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from cwm.config import CWMConfig
from cwm.errors import InputError
from pretrain.clips import (  # noqa: F401 (re-exported: the public names of the data modules)
    EVAL_EPOCH, MIN_STEPS_PER_PASS, ClipSampler, ClipSpec, PhotoClips, SkippedVideoWarning, SyntheticClips,
    crop_box, crop_frames, epochs_per_pass, item_rng, round_up)
from pretrain.videos import (  # noqa: F401 (re-exported)
    READER_CACHE, VIDEO_EXTENSIONS, VideoClips, VideoInfo, find_videos, gap_in_frames, scan_videos)


# --------------------------------------------------------------------------------- building
@dataclass
class DataBundle:
    """A dataset, its sampler, and what the logs report about it."""

    dataset: Dataset
    sampler: ClipSampler
    summary: str
    skipped: list[tuple[str, str]]


def build_data(cfg, model_cfg: CWMConfig, unit: int, warn: bool = True) -> DataBundle:
    """The training dataset and sampler.

    Args:
        cfg: the :class:`pretrain.config.PretrainConfig`.
        unit: the epoch length is rounded up to a multiple of this (global batch x grad_accum),
            so every process gets the same number of whole optimizer steps.
        warn: emit one :class:`SkippedVideoWarning` per skipped video (the main process only).
    """
    d, spec = cfg.data, ClipSpec.from_config(cfg, model_cfg)
    if d.source in ("synthetic", "photos"):
        length = round_up(d.scenes_per_epoch * d.clips_per_scene, unit)
        ds = SyntheticClips(spec, length, d.scene_preset, d.scene_frames, d.clips_per_scene, d.scene_overrides)
        summary = f"synthetic scenes ({d.scene_preset}), {length} clips per epoch"
        if d.source == "photos":
            ds = PhotoClips(spec, length, d.photo_folders, d.photo_exclude, d.photo_fraction, ds)
            summary = (f"{len(ds.bank)} photos under {', '.join(map(str, d.photo_folders))} "
                       f"({100 * d.photo_fraction:.0f}% of clips; the rest {summary})")
        return DataBundle(ds, ClipSampler(length, shuffle=False, seed=spec.seed,
                                          epochs_per_pass=epochs_per_pass(length, unit)), summary, [])
    backends = None if d.backends is None else tuple(d.backends)
    videos, skipped = scan_videos(d.source, spec, backends)
    if warn:
        for path, reason in skipped:
            warnings.warn(f"skipping video '{path}': {reason}", SkippedVideoWarning, stacklevel=2)
    if not videos:
        raise InputError(f"none of the {len(skipped)} video(s) under '{d.source}' is usable "
                         f"(first reason: {skipped[0][1]})")
    length = round_up(len(videos) * d.clips_per_video, unit)
    ds = VideoClips(spec, videos, length, backends)
    summary = (f"{len(videos)} video(s) under '{d.source}', {len(skipped)} skipped, "
               f"{length} clips per epoch")
    sampler = ClipSampler(length, shuffle=True, seed=spec.seed, epochs_per_pass=epochs_per_pass(length, unit))
    return DataBundle(ds, sampler, summary, skipped)


def eval_batch(dataset: Dataset, size: int) -> dict[str, torch.Tensor]:
    """A fixed held-out batch: keys with the reserved epoch :data:`EVAL_EPOCH`."""
    items = [dataset[(EVAL_EPOCH, i * 7919 % len(dataset))] for i in range(size)]
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}
