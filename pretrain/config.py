"""One config system for pretraining: dataclass defaults, an optional YAML file, dotted overrides.

Resolution order (later wins)::

    PretrainConfig() defaults  <  --config FILE.yaml  <  section.field=value overrides

The resolved config is written to ``<train.output_dir>/config.yaml`` at start, and a resumed run
starts from that file. Unknown names are refused with a "did you mean" hint; values are checked
against the field types (no silent fallback to a default).

>>> cfg = resolve(overrides=["data.source=synthetic", "train.max_steps=100"])
>>> cfg.train.max_steps
100
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cwm.config import CWMConfig, get_variant
from cwm.errors import ConfigError
from pretrain.config_values import (  # noqa: F401 (as_range, load_yaml, parse_override re-exported)
    Range, _choice, _coerce, _fields, _unknown, as_range, load_yaml, parse_override)


# --------------------------------------------------------------------------------- sections
@dataclass
class ModelSection:
    """The model: a named variant (``cwm.config.VARIANTS``) plus field overrides.

    ``arch`` replaces any :class:`cwm.config.CWMConfig` field, e.g. ``model.arch.enc_depth=2``.
    """

    variant: str = "tiny_64"
    arch: dict = field(default_factory=dict)


@dataclass
class DataSection:
    """Where frame pairs come from and how they are sampled.

    Attributes:
        source: ``"synthetic"`` (the built-in scene generator), ``"photos"`` (scenes made of
            the real photos under ``photo_folders``, :mod:`cwm.synthetic.photos`, mixed with
            synthetic scenes by ``photo_fraction``) or a folder searched recursively for
            mp4/avi/mov/mkv/webm files.
        gap_frames: frames between consecutive sampled frames: an int or ``[lo, hi]`` (inclusive),
            drawn per clip. Used unless ``gap_ms`` is set. (ZWM recipe: ``[5, 15]``.)
        gap_ms: the gap in milliseconds, a number or ``[lo, hi]``, converted with each video's
            frame rate (ECCV recipe: 150). Videos only.
        crop_scale, crop_ratio: random resized crop (area fraction and aspect range), the same box
            on every frame of a clip. ``[1, 1]`` keeps the whole frame.
        flip: random horizontal flip, the same on every frame of a clip.
        num_workers: DataLoader worker processes (0 decodes in the training process).
        clips_per_video: clips drawn from each video per epoch.
        backends: video readers to try, in order, e.g. ``[pyav, opencv]``; None (the default)
            follows the library's order for each file (:func:`cwm.io.default_backends`: decord,
            PyAV, OpenCV, but PyAV first for AVI, where decord mis-seeks).
        scene_preset: synthetic scene preset (``cwm.synthetic.PRESETS``), or a list of presets
            used in turn, one per rendered scene (``[default, camera, objects]``).
        scene_overrides: :class:`cwm.synthetic.SceneConfig` fields to replace, e.g.
            ``data.scene_overrides.camera_speed=0.1``.
        scene_frames: frames rendered per synthetic scene; clips are drawn from them.
        clips_per_scene: clips drawn from one rendered scene (rendering is the costly part).
        scenes_per_epoch: distinct synthetic scenes per epoch (epochs use new scenes).
        photo_folders: folders of photos (searched recursively) for ``source: photos``.
        photo_exclude: file-name globs left out of the photo bank (held-out evaluation material;
            default :data:`cwm.synthetic.photos.HELD_OUT_PATTERNS`).
        photo_fraction: share of ``source: photos`` items drawn from photos; the rest are
            synthetic scenes of ``scene_preset``.
    """

    source: str = "synthetic"
    gap_frames: Any = 1
    gap_ms: Any = None
    crop_scale: Range = field(default_factory=lambda: [0.5, 1.0])
    crop_ratio: Range = field(default_factory=lambda: [0.75, 4 / 3])
    flip: bool = True
    num_workers: int = 2
    clips_per_video: int = 1
    backends: Any = None
    scene_preset: Any = "default"
    scene_overrides: dict = field(default_factory=dict)
    scene_frames: int = 8
    clips_per_scene: int = 8
    scenes_per_epoch: int = 100_000
    photo_folders: list = field(default_factory=list)
    photo_exclude: Any = None
    photo_fraction: float = 1.0


@dataclass
class OptimSection:
    """AdamW with linear warmup then cosine decay.

    The peak lr is ``base_lr * effective_batch / 256`` (the MAE rule) unless ``lr`` is set.
    Weight decay applies only to weights with two or more dimensions (not biases, norms, tokens).
    """

    base_lr: float = 1.5e-4
    lr: Any = None
    min_lr_ratio: float = 0.0
    warmup_steps: int = 1000
    weight_decay: float = 0.05
    betas: Range = field(default_factory=lambda: [0.9, 0.95])
    clip_grad: float = 1.0


@dataclass
class TrainSection:
    """The loop.

    Attributes:
        output_dir: the run folder (config, logs, checkpoints, export). Required.
        batch_size: clips per process per micro-batch; the effective batch is
            ``batch_size * grad_accum * num_processes``.
        mask_ratio: masked fraction of the last frame: a number or ``[lo, hi]`` drawn per step.
        mixed_precision: ``"auto"`` (bf16 on GPUs that support it, else fp32), ``"no"``, ``"bf16"``
            or ``"fp16"``; bf16 also works on CPUs (fast with AVX512-BF16/AMX).
        num_threads: ``torch.set_num_threads`` per process (0 leaves torch's default).
        cpu: train on the CPU even when a GPU is present.
        compile: ``torch.compile`` the model (in place: ``nn.Module.compile``). Off by default: on a
            CPU it costs minutes of compilation for a step 1.0-1.3x faster at 64 px
            (benchmarks/RESULTS.md, "Scale-out"); worth trying for long GPU runs.
        eval_every, eval_batch, eval_mask_ratio: a fixed held-out batch scored with and without
            visible last-frame patches (``eval_mask_ratio`` defaults to the middle of ``mask_ratio``).
        checkpoint_every: steps between checkpoints (0: only at the end); ``keep_checkpoints``
            newest ones are kept.
        log_with: Accelerate tracker(s), e.g. ``"tensorboard"``; None for none.
        progress: tqdm bar: ``"auto"`` (when stderr is a terminal), ``"on"`` or ``"off"``.
        init: weights to start from (anything ``cwm.load`` takes: ``"default"``, a weights folder,
            a ``.safetensors`` or an official ``.pth``) instead of a random initialisation; the
            architecture must match ``model``. Fine-tuning, and continuing a run on a fresh
            machine from its exported weights. Ignored when resuming a checkpoint.
    """

    output_dir: Any = None
    batch_size: int = 32
    grad_accum: int = 1
    max_steps: int = 10_000
    mask_ratio: Any = 0.99
    mixed_precision: str = "auto"
    seed: int = 0
    num_threads: int = 0
    cpu: bool = False
    compile: bool = False
    log_every: int = 20
    eval_every: int = 500
    eval_batch: int = 64
    eval_mask_ratio: Any = None
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    export_at_end: bool = True
    log_with: Any = None
    progress: str = "auto"
    init: Any = None


@dataclass
class PretrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    train: TrainSection = field(default_factory=TrainSection)

    # ----------------------------------------------------------------------------- derived
    def model_config(self) -> CWMConfig:
        """The model's :class:`CWMConfig`: the variant with ``model.arch`` applied."""
        base = get_variant(self.model.variant).to_dict()
        base.update(self.model.arch)
        return CWMConfig.from_dict(base)

    def mask_range(self) -> tuple[float, float]:
        return as_range(self.train.mask_ratio, "train.mask_ratio", float)

    def eval_mask_ratio(self) -> float:
        if self.train.eval_mask_ratio is not None:
            return float(self.train.eval_mask_ratio)
        lo, hi = self.mask_range()
        return (lo + hi) / 2

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> "PretrainConfig":
        """Raise ConfigError naming the first bad field; returns self."""
        t, o, d = self.train, self.optim, self.data
        self.model_config()
        lo, hi = self.mask_range()
        if not 0.0 <= lo <= hi < 1.0:
            raise ConfigError(f"train.mask_ratio must satisfy 0 <= lo <= hi < 1 (got {t.mask_ratio})")
        for name in ("batch_size", "grad_accum", "max_steps", "log_every", "eval_batch"):
            if getattr(t, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1 (got {getattr(t, name)})")
        for name in ("eval_every", "checkpoint_every", "num_threads", "keep_checkpoints"):
            if getattr(t, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0 (got {getattr(t, name)})")
        _choice(t.mixed_precision, ("auto", "no", "bf16", "fp16"), "train.mixed_precision")
        _choice(t.progress, ("auto", "on", "off"), "train.progress")
        if o.warmup_steps < 0 or o.clip_grad < 0 or o.weight_decay < 0 or not 0 <= o.min_lr_ratio <= 1:
            raise ConfigError("optim.warmup_steps, clip_grad and weight_decay must be >= 0 and "
                              "optim.min_lr_ratio in [0, 1]")
        if len(o.betas) != 2 or not all(0 <= b < 1 for b in o.betas):
            raise ConfigError(f"optim.betas must be two numbers in [0, 1) (got {o.betas})")
        if (o.lr if o.lr is not None else o.base_lr) <= 0:
            raise ConfigError("the learning rate must be > 0")
        gap = as_range(d.gap_frames, "data.gap_frames", int)
        if gap[0] < 1:
            raise ConfigError(f"data.gap_frames must be >= 1 (got {d.gap_frames})")
        if d.gap_ms is not None and as_range(d.gap_ms, "data.gap_ms", float)[0] <= 0:
            raise ConfigError(f"data.gap_ms must be > 0 (got {d.gap_ms})")
        s_lo, s_hi = as_range(d.crop_scale, "data.crop_scale", float)
        r_lo, r_hi = as_range(d.crop_ratio, "data.crop_ratio", float)
        if not (0 < s_lo <= s_hi <= 1 and 0 < r_lo <= r_hi):
            raise ConfigError(f"data.crop_scale must be within (0, 1] and data.crop_ratio > 0 "
                              f"(got {d.crop_scale}, {d.crop_ratio})")
        for name in ("clips_per_video", "scene_frames", "clips_per_scene", "scenes_per_epoch"):
            if getattr(d, name) < 1:
                raise ConfigError(f"data.{name} must be >= 1 (got {getattr(d, name)})")
        if not 0.0 <= d.photo_fraction <= 1.0:
            raise ConfigError(f"data.photo_fraction must be in [0, 1] (got {d.photo_fraction})")
        if d.source == "photos" and not d.photo_folders:
            raise ConfigError("data.source=photos needs data.photo_folders=[FOLDER, ...]")
        if d.num_workers < 0:
            raise ConfigError(f"data.num_workers must be >= 0 (got {d.num_workers})")
        if d.backends is not None:
            from cwm.io import BACKENDS

            if not isinstance(d.backends, list) or not d.backends or any(b not in BACKENDS for b in d.backends):
                raise ConfigError(f"data.backends must be null (the library's order per file) or a list "
                                  f"from {list(BACKENDS)} (got {d.backends!r})")
        return self


def merge(cfg: PretrainConfig, tree: dict[str, Any], source: str = "") -> PretrainConfig:
    """Apply a nested mapping ``{section: {field: value}}`` onto ``cfg`` (in place)."""
    if not isinstance(tree, dict):
        raise ConfigError(f"{source or 'config'}: expected a mapping of sections, got {type(tree).__name__}")
    sections = _fields(cfg)
    for sec_name, values in tree.items():
        if sec_name not in sections:
            raise _unknown(sec_name, sections, "")
        section = getattr(cfg, sec_name)
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: section '{sec_name}' must be a mapping")
        known = _fields(section)
        for key, value in values.items():
            if key not in known:
                raise _unknown(key, known, f"{sec_name}.")
            setattr(section, key, _coerce(value, known[key], f"{sec_name}.{key}"))
    return cfg


def resolve(config_file: str | Path | None = None, overrides: typing.Sequence[str] = (),
            base: PretrainConfig | None = None) -> PretrainConfig:
    """Defaults (or ``base``), then the YAML file, then the dotted overrides; validated."""
    cfg = base if base is not None else PretrainConfig()
    if config_file is not None:
        merge(cfg, load_yaml(config_file), str(config_file))
    for text in overrides:
        tree = parse_override(text)
        (sec_name, kv), = tree.items()
        (key, value), = kv.items()
        section = getattr(cfg, sec_name, None)
        if isinstance(value, dict) and isinstance(getattr(section, key, None), dict):
            value = {**getattr(section, key), **value}  # model.arch.x=1 adds to model.arch
            tree = {sec_name: {key: value}}
        merge(cfg, tree, f"override '{text}'")
    return cfg.validate()


def save_yaml(cfg: PretrainConfig, path: str | Path) -> None:
    """Write the resolved config (atomically) so the run can be reproduced or resumed."""
    from cwm.atomic import atomic_write

    text = yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=None)
    with atomic_write(path, overwrite=True) as tmp:
        Path(tmp).write_text(text)


def from_dict(tree: dict[str, Any]) -> PretrainConfig:
    return merge(PretrainConfig(), tree).validate()


def lr_for(cfg: PretrainConfig, effective_batch: int) -> float:
    """Peak learning rate: ``optim.lr`` if set, else ``base_lr * effective_batch / 256``."""
    if cfg.optim.lr is not None:
        return float(cfg.optim.lr)
    return cfg.optim.base_lr * effective_batch / 256


def cosine_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """lr multiplier at ``step``: linear warmup to 1, then cosine down to ``min_ratio`` at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


__all__ = ["PretrainConfig", "ModelSection", "DataSection", "OptimSection", "TrainSection",
           "resolve", "merge", "parse_override", "load_yaml", "save_yaml", "from_dict", "as_range",
           "lr_for", "cosine_factor"]
