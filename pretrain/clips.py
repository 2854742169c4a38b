"""Clips for pretraining, sampled deterministically: keys, sampler, crops, synthetic and photo clips.

Every item is named by a key ``(epoch, index)`` that the sampler yields, and all of its
randomness (which frames, the gap, the crop, the flip, the mask noise) is drawn from a generator
seeded by ``(seed, epoch, index)``. So a clip does not depend on which process or DataLoader
worker builds it: one process and N processes with the same global batch see the same clips, and
a resumed run sees exactly the clips the uninterrupted run would have seen.

An item is ``{"video": uint8 [T, H, W, 3], "noise": float32 [h*w]}``: RGB frames at the model's
resolution, and one uniform number per last-frame patch (the loop reveals the patches with the
smallest noise, so the mask is per sample yet the masked count is the same across the batch).

Video folders are in :mod:`pretrain.videos`; :mod:`pretrain.data` builds the dataset a run uses.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from cwm.config import CWMConfig
from cwm.errors import ConfigError

if TYPE_CHECKING:  # annotations only: the photo bank is imported when first used
    from cwm.synthetic.photos import PhotoBank

#: The epoch key of the fixed held-out batch: never reached by training epochs.
EVAL_EPOCH = 2**31 - 1


class SkippedVideoWarning(UserWarning):
    """A video in the training folder was skipped (unreadable, empty, or too short)."""


def item_rng(seed: int, epoch: int, index: int, stream: int = 0) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(epoch), int(index), stream])


# --------------------------------------------------------------------------------- sampling
class ClipSampler(Sampler):
    """Yields ``(epoch, index)`` keys: a seeded permutation per epoch, or in order.

    One pass over the sampler (what Accelerate's ``set_epoch`` numbers, once per DataLoader pass)
    covers ``epochs_per_pass`` consecutive epochs: pass ``p`` yields epochs ``p*k .. p*k+k-1`` in
    turn, so the keys of step ``s`` do not depend on ``k``. A small folder (an epoch of one or two
    batches) would otherwise end the DataLoader's iterator after every step or two, and the
    workers could not prefetch across that boundary: each step would wait for a whole batch to be
    decoded. :func:`build_data` sets ``k`` so that a pass holds at least :data:`MIN_STEPS_PER_PASS`
    optimizer steps.
    """

    def __init__(self, length: int, shuffle: bool, seed: int, epochs_per_pass: int = 1):
        self.length, self.shuffle, self.seed, self.epoch = length, shuffle, seed, 0
        self.epochs_per_pass = max(1, int(epochs_per_pass))

    def set_epoch(self, epoch: int) -> None:
        """Select the pass (Accelerate's "epoch"): epochs ``epoch*k .. epoch*k + k - 1``."""
        self.epoch = int(epoch)

    def _epoch_keys(self, epoch: int) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(self.length, generator=g).tolist()
        else:
            order = range(self.length)
        return ((epoch, i) for i in order)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        first = self.epoch * self.epochs_per_pass
        for epoch in range(first, first + self.epochs_per_pass):
            yield from self._epoch_keys(epoch)

    def __len__(self) -> int:
        return self.length * self.epochs_per_pass


#: A DataLoader pass spans at least this many optimizer steps (see :class:`ClipSampler`).
MIN_STEPS_PER_PASS = 64


def epochs_per_pass(length: int, unit: int) -> int:
    """Epochs of ``length`` clips per sampler pass, for passes of >= MIN_STEPS_PER_PASS steps of ``unit``."""
    return max(1, -(-MIN_STEPS_PER_PASS * unit // length))


def round_up(n: int, unit: int) -> int:
    return max(unit, -(-n // unit) * unit)


# --------------------------------------------------------------------------------- cropping
def crop_box(rng: np.random.Generator, height: int, width: int, scale: tuple[float, float],
             ratio: tuple[float, float]) -> tuple[int, int, int, int]:
    """A random resized crop ``(top, left, h, w)``: area fraction in ``scale``, aspect (w/h) in
    ``ratio`` (log-uniform), as torchvision draws it; falls back to the central crop."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    aspect = width / height  # fallback: the largest central crop within the ratio range
    if aspect < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif aspect > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def crop_frames(frames: np.ndarray, box: tuple[int, int, int, int], size: tuple[int, int],
                flip: bool) -> np.ndarray:
    """The same crop (and flip) on every frame, resized to ``size``: ``[T, H', W', 3] -> [T, *size, 3]``.

    Resizing is bilinear with antialiasing, done by torch: OpenCV's thread pool does not survive
    the fork that starts DataLoader workers (``cv2.setNumThreads`` and parallel resizes hang there).
    """
    import torch.nn.functional as F

    top, left, h, w = box
    clip = frames[:, top:top + h, left:left + w]
    if flip:
        clip = clip[:, :, ::-1]
    if (h, w) != tuple(size):
        t = torch.from_numpy(np.ascontiguousarray(clip)).permute(0, 3, 1, 2).float()  # (T, 3, h, w)
        t = F.interpolate(t, size=tuple(size), mode="bilinear", antialias=True, align_corners=False)
        return t.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
    return np.ascontiguousarray(clip)


@dataclass(frozen=True)
class ClipSpec:
    """What every dataset needs to know: output size, frames per clip, patch grid, augmentation."""

    size: tuple[int, int]
    num_frames: int
    patches: int
    gap_frames: tuple[int, int]
    gap_ms: tuple[float, float] | None
    crop_scale: tuple[float, float]
    crop_ratio: tuple[float, float]
    flip: bool
    seed: int

    @classmethod
    def from_config(cls, cfg, model_cfg: CWMConfig) -> "ClipSpec":
        from pretrain.config import as_range

        d = cfg.data
        return cls(size=model_cfg.input_size, num_frames=model_cfg.num_frames,
                   patches=model_cfg.tokens_per_frame,
                   gap_frames=as_range(d.gap_frames, "data.gap_frames", int),
                   gap_ms=None if d.gap_ms is None else as_range(d.gap_ms, "data.gap_ms", float),
                   crop_scale=as_range(d.crop_scale, "data.crop_scale", float),
                   crop_ratio=as_range(d.crop_ratio, "data.crop_ratio", float),
                   flip=bool(d.flip), seed=int(cfg.train.seed))

    def finish(self, rng: np.random.Generator, frames: np.ndarray) -> dict[str, torch.Tensor]:
        """Crop, flip and draw the mask noise: the last step of every item."""
        box = crop_box(rng, frames.shape[1], frames.shape[2], self.crop_scale, self.crop_ratio)
        flip = self.flip and bool(rng.integers(0, 2))
        video = crop_frames(frames, box, self.size, flip)
        noise = rng.random(self.patches, dtype=np.float32)
        return {"video": torch.from_numpy(video), "noise": torch.from_numpy(noise)}


# --------------------------------------------------------------------------------- synthetic
class SyntheticClips(Dataset):
    """Clips from :func:`cwm.synthetic.make_scene`.

    One scene of ``scene_frames`` frames is rendered per ``clips_per_scene`` consecutive items
    (rendering costs more than a training step per sample), each item drawing its own start,
    gap, crop and flip. Scene ``i`` uses ``presets[i % len(presets)]`` when given a list. Items are read in order, so consecutive keys hit the cached scene; new
    epochs render new scenes.
    """

    def __init__(self, spec: ClipSpec, length: int, preset: str | list[str] = "default", scene_frames: int = 8,
                 clips_per_scene: int = 8, overrides: dict | None = None):
        if spec.gap_ms is not None:
            raise ConfigError("data.gap_ms needs videos with a frame rate; synthetic scenes take data.gap_frames")
        max_gap = (scene_frames - 1) // (spec.num_frames - 1)
        if spec.gap_frames[0] > max_gap:
            raise ConfigError(f"data.gap_frames {list(spec.gap_frames)} does not fit in data.scene_frames="
                              f"{scene_frames} for {spec.num_frames}-frame clips (largest gap {max_gap})")
        from cwm.synthetic import resolve_config

        self.overrides = dict(overrides or {})
        presets = [preset] if isinstance(preset, str) else list(preset)
        if not presets or not all(isinstance(p, str) for p in presets):
            raise ConfigError(f"data.scene_preset must be a preset name or a list of names (got {preset!r})")
        for name in presets:
            resolve_config(None, name, self.overrides)  # unknown names fail here, not in a worker
        self.spec, self.length, self.presets = spec, length, presets
        self.scene_frames, self.clips_per_scene = scene_frames, clips_per_scene
        self.gap = (spec.gap_frames[0], min(spec.gap_frames[1], max_gap))
        self._cache: OrderedDict = OrderedDict()

    def __len__(self) -> int:
        return self.length

    def scene_frames_for(self, epoch: int, scene: int) -> np.ndarray:
        """``[scene_frames, H, W, 3]`` uint8 of one scene (cached: a few scenes per worker)."""
        key = (epoch, scene)
        if key not in self._cache:
            from cwm.synthetic import make_scene

            seed = int(np.random.SeedSequence([self.spec.seed, epoch, scene, 1]).generate_state(1)[0])
            preset = self.presets[scene % len(self.presets)]
            self._cache[key] = make_scene(seed, self.spec.size, self.scene_frames, preset=preset,
                                          **self.overrides).frames
            while len(self._cache) > 2:
                self._cache.popitem(last=False)
        return self._cache[key]

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, index = key
        frames = self.scene_frames_for(epoch, index // self.clips_per_scene)
        rng = item_rng(self.spec.seed, epoch, index)
        gap = int(rng.integers(self.gap[0], self.gap[1] + 1))
        span = gap * (self.spec.num_frames - 1)
        start = int(rng.integers(0, self.scene_frames - span))
        return self.spec.finish(rng, frames[start:start + span + 1:gap])


# --------------------------------------------------------------------------------- photos
class PhotoClips(Dataset):
    """Two-frame clips of real-photo scenes (:func:`cwm.synthetic.photos.make_photo_scene`), mixed
    with synthetic scenes.

    Item ``(epoch, index)`` is a photo scene with probability ``fraction`` (drawn from the item's
    own generator), else the synthetic clip of the same key. A photo scene is rendered per item
    (3-4 ms at 64 px), so clips of one scene are not reused. The bank is loaded lazily in each
    process, so DataLoader workers do not pickle it.
    """

    def __init__(self, spec: ClipSpec, length: int, folders: list[str], exclude: list[str] | None,
                 fraction: float, synthetic: SyntheticClips):
        if spec.num_frames != 2:
            raise ConfigError(f"data.source=photos makes 2-frame clips; the model takes {spec.num_frames}")
        self.spec, self.length, self.fraction, self.synthetic = spec, length, float(fraction), synthetic
        self.folders, self.exclude = [str(f) for f in folders], exclude
        self._bank = None
        self.bank  # load now: a missing folder fails here, in the main process

    @property
    def bank(self) -> PhotoBank:
        if self._bank is None:
            from cwm.synthetic.photos import HELD_OUT_PATTERNS, PhotoBank

            exclude = HELD_OUT_PATTERNS if self.exclude is None else tuple(self.exclude)
            self._bank = PhotoBank.from_folders(self.folders, exclude=exclude)
        return self._bank

    def __getstate__(self) -> dict:
        return dict(self.__dict__, _bank=None)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        from cwm.synthetic.photos import make_photo_scene

        epoch, index = key
        rng = item_rng(self.spec.seed, epoch, index, 3)
        if rng.random() >= self.fraction:
            return self.synthetic[key]
        seed = int(np.random.SeedSequence([self.spec.seed, epoch, index, 4]).generate_state(1)[0])
        frames = make_photo_scene(self.bank, seed, self.spec.size, 2).frames
        return self.spec.finish(rng, frames)
