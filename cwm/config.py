"""Model configuration and the table of named variants.

A :class:`CWMConfig` holds everything needed to rebuild a model and its preprocessing, and is
stored as ``config.json`` beside ``model.safetensors`` (see :mod:`cwm.checkpoints`).
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cwm.errors import ConfigError, closest, did_you_mean, shown

#: Bumped when config.json changes incompatibly; newer files are refused with a clear error.
FORMAT_VERSION = 1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


#: Fields older config.json files hold that no longer mean anything; read and ignored.
#: ``mask_ratio`` (0.99) was written but never read: the revealed fraction is a call's ``visible``.
LEGACY_FIELDS = ("mask_ratio",)


@dataclass(frozen=True)
class CWMConfig:
    """Architecture and preprocessing of a CWM.

    Attributes:
        img_size: the resolution ``(H, W)`` the model was built and trained at (its positional
            tables' grid); both divisible by ``patch_size``. Inputs of other sizes get those tables
            resized per frame, as the official code does. ``None`` means unknown (an official
            checkpoint of unknown provenance): tables are then regenerated natively for each
            input's grid, which is what the official class built at that input size computes.
        patch_size: side of the square patch (the tubelet is always 1 frame).
        num_frames: frames per clip ``T >= 2``; the last one is the predicted frame.
        enc_dim, enc_depth, enc_heads: encoder width, number of blocks and attention heads.
        dec_dim, dec_depth, dec_heads: decoder width, number of blocks and attention heads.
        mlp_ratio: MLP hidden width over model width.
        k_bias: whether the checkpoint has a learned attention ``k_bias`` (ECCV 2024 releases);
            the official code also gives ``encoder_to_decoder`` a bias exactly when this is set.
        mean, std: per-channel normalisation applied to RGB in [0, 1] before the model.

    How much of frame 1 a call reveals is the caller's choice, not the architecture's: it is the
    ``visible`` fraction of :meth:`cwm.predictor.CWMPredictor.predict` and of the probes
    (:data:`LEGACY_FIELDS` lists the old ``mask_ratio`` field, still read and ignored).
    """

    img_size: tuple[int, int] | None = (224, 224)
    patch_size: int = 8
    num_frames: int = 2
    enc_dim: int = 768
    enc_depth: int = 12
    enc_heads: int = 12
    dec_dim: int = 384
    dec_depth: int = 4
    dec_heads: int = 6
    mlp_ratio: float = 4.0
    k_bias: bool = False
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        self._check_types()
        size = self.img_size
        if _is_int(size):
            size = (size, size)
        if size is not None:
            object.__setattr__(self, "img_size", tuple(int(s) for s in size))
        for name in _INT_FIELDS:  # numpy integers become plain ints (config.json must serialise)
            object.__setattr__(self, name, int(getattr(self, name)))
        object.__setattr__(self, "mlp_ratio", float(self.mlp_ratio))
        object.__setattr__(self, "k_bias", bool(self.k_bias))
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        self.validate()

    def _check_types(self) -> None:
        """Raise :class:`ConfigError` for a field of the wrong type (a JSON string, a fraction
        where an integer belongs, NaN), before anything converts it silently."""
        for name in _INT_FIELDS:
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer (got {shown(getattr(self, name))})")
        size = self.img_size
        if size is not None and not _is_int(size) and not (
                _is_sequence(size) and len(size) == 2 and all(_is_int(s) for s in size)):
            raise ConfigError(f"img_size must be null, an integer or [H, W] integers (got {shown(size)})")
        if size is not None and min((size, size) if _is_int(size) else size) < 1:
            raise ConfigError(f"img_size must be positive (got {shown(size)})")
        if not _is_real(self.mlp_ratio):
            raise ConfigError(f"mlp_ratio must be a finite number (got {shown(self.mlp_ratio)})")
        if not isinstance(self.k_bias, (bool, _np_bool())):
            raise ConfigError(f"k_bias must be true or false (got {shown(self.k_bias)})")
        for name in ("mean", "std"):
            v = getattr(self, name)
            if not (_is_sequence(v) and len(v) == 3 and all(_is_real(x) for x in v)):
                raise ConfigError(f"{name} must be 3 finite numbers (got {shown(v)})")

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first inconsistent field."""
        h, w = self.img_size or (self.patch_size, self.patch_size)
        if self.patch_size < 1 or h % self.patch_size or w % self.patch_size:
            raise ConfigError(f"img_size {self.img_size} is not divisible by patch_size {self.patch_size}")
        if self.num_frames < 2:
            raise ConfigError(f"num_frames must be >= 2 (got {self.num_frames})")
        for name in ("enc", "dec"):
            dim, heads = getattr(self, f"{name}_dim"), getattr(self, f"{name}_heads")
            if heads < 1 or dim % heads:
                raise ConfigError(f"{name}_dim {dim} is not divisible by {name}_heads {heads}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError("mean and std must each hold 3 values, std > 0")
        if not self.mlp_ratio * min(self.enc_dim, self.dec_dim) >= 1:
            raise ConfigError(f"mlp_ratio {self.mlp_ratio} leaves an MLP with no hidden units")

    @property
    def input_size(self) -> tuple[int, int]:
        """The resolution inputs are resized to: ``img_size``, or 224 x 224 when it is unknown."""
        return self.img_size or (224, 224)

    @property
    def grid(self) -> tuple[int, int]:
        """Patch grid ``(h, w)`` of one frame at :attr:`input_size`."""
        h, w = self.input_size
        return h // self.patch_size, w // self.patch_size

    @property
    def tokens_per_frame(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def num_tokens(self) -> int:
        return self.num_frames * self.tokens_per_frame

    def replace(self, **changes: Any) -> "CWMConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["img_size"] = list(self.img_size) if self.img_size else None
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CWMConfig":
        """Build from a dict (a parsed ``config.json`` "architecture" object).

        Raises:
            ConfigError: not a dict, unknown fields (with a "did you mean" hint), values of the
                wrong type or out of range. Nothing else escapes, whatever ``d`` holds.
        """
        if not isinstance(d, Mapping):
            raise ConfigError(f"a config must be a JSON object of fields, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k not in LEGACY_FIELDS}
        unknown = sorted(str(k) for k in d if k not in known)
        if unknown:
            hints = [f"{shown(u)} (did you mean {m}?)" if (m := closest(u, known)) else shown(u) for u in unknown]
            raise ConfigError(f"unknown config field(s): {', '.join(hints)}")
        return cls(**d)


_INT_FIELDS = ("patch_size", "num_frames", "enc_dim", "enc_depth", "enc_heads", "dec_dim", "dec_depth",
               "dec_heads")


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, _np_bool()))


def _is_real(v: Any) -> bool:
    return (isinstance(v, numbers.Real) and not isinstance(v, (bool, _np_bool()))
            and math.isfinite(v))


def _is_sequence(v: Any) -> bool:
    """A list, tuple, array... of values; not a string or a mapping."""
    return not isinstance(v, (str, bytes, Mapping)) and hasattr(v, "__len__") and hasattr(v, "__iter__")


def _np_bool() -> type:
    import numpy as np

    return np.bool_


_OFFICIAL_224 = dict(img_size=(224, 224))

#: Named variants. Official shapes match the released checkpoints (docs/design.md §3); the small ones
#: train on a CPU.
VARIANTS: dict[str, CWMConfig] = {
    "cwm2023_base_8x8": CWMConfig(**_OFFICIAL_224, patch_size=8, enc_dim=768, enc_depth=12, enc_heads=12,
                                  dec_dim=384, dec_depth=4, dec_heads=6),
    "cwm2023_large_4x4": CWMConfig(**_OFFICIAL_224, patch_size=4, enc_dim=1024, enc_depth=24, enc_heads=16,
                                   dec_dim=512, dec_depth=12, dec_heads=8),
    "eccv2024_2frame_b8": CWMConfig(**_OFFICIAL_224, patch_size=8, enc_dim=768, enc_depth=12, enc_heads=12,
                                    dec_dim=512, dec_depth=8, dec_heads=16, k_bias=True),
    "eccv2024_3frame_b8": CWMConfig(**_OFFICIAL_224, patch_size=8, num_frames=3, enc_dim=768, enc_depth=12,
                                    enc_heads=12, dec_dim=512, dec_depth=8, dec_heads=16, k_bias=True),
    "tiny_64": CWMConfig(img_size=(64, 64), patch_size=8, enc_dim=128, enc_depth=4, enc_heads=4,
                         dec_dim=128, dec_depth=2, dec_heads=4),
    "small_64": CWMConfig(img_size=(64, 64), patch_size=4, enc_dim=192, enc_depth=6, enc_heads=3,
                          dec_dim=128, dec_depth=3, dec_heads=4),
    "small_128": CWMConfig(img_size=(128, 128), patch_size=8, enc_dim=192, enc_depth=6, enc_heads=3,
                           dec_dim=128, dec_depth=3, dec_heads=4),
}


def get_variant(name: str) -> CWMConfig:
    """Return the config of a named variant; unknown names get a "did you mean" hint."""
    if name not in VARIANTS:
        raise ConfigError(f"unknown variant '{name}'{did_you_mean(name, VARIANTS)} (known: {', '.join(VARIANTS)})")
    return VARIANTS[name]
