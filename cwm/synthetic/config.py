"""The scene generator's random ranges (:class:`SceneConfig`) and its named presets."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from cwm.errors import ConfigError, did_you_mean

Size = tuple[int, int]

@dataclass(frozen=True)
class SceneConfig:
    """Random ranges of the scene generator. Lengths are fractions of ``min(H, W)``.

    Ranges are ``(low, high)`` and inclusive; speeds are maxima per frame. Depths are in arbitrary
    world units (only ratios matter); every object is nearer than every background point.
    """

    num_objects: tuple[int, int] = (1, 4)        # number of objects (the part object counts once)
    part_object_prob: float = 0.5                # chance that one object is cut into pieces
    num_parts: tuple[int, int] = (2, 3)          # pieces of the part object
    object_radius: tuple[float, float] = (0.10, 0.22)
    object_speed: float = 0.05                   # own translation, fraction of min(H, W)
    object_rotation: float = 5.0                 # own rotation, degrees
    object_scaling: float = 0.04                 # own scale change, |s - 1|
    camera_speed: float = 0.03                   # background shift at its mean depth
    camera_rotation: float = 1.0                 # camera roll, degrees (0 disables)
    camera_zoom: float = 0.02                    # zoom, |s - 1| (0 disables)
    background_depth: tuple[float, float] = (8.0, 12.0)
    background_slant: float = 0.25               # max relative inverse-depth change over the frame
    object_depth: tuple[float, float] = (2.5, 5.5)
    focal: float = 1.0                           # focal length in units of the image width
    stereo: bool = False                         # +x camera translation only, static objects
    noise: float = 0.0                           # std of Gaussian pixel noise, intensity in [0, 1]

    def __post_init__(self) -> None:
        for name in ("num_objects", "num_parts", "object_radius", "background_depth",
                     "object_depth"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ConfigError(f"SceneConfig.{name} must be (low, high) with 0 <= low <= high, "
                                  f"got {(low, high)}")
        # The slant raises the background's inverse depth by up to `slant` inside the frame; allow
        # half as much again for the area that camera motion brings into view.
        nearest_background = self.background_depth[0] / (1 + 1.5 * self.background_slant)
        problems = [(self.num_parts[0] < 2, "num_parts must start at 2 or more"),
                    (not 0 <= self.background_slant <= 0.5, "background_slant must be in [0, 0.5]"),
                    (self.object_depth[1] >= nearest_background,
                     "object_depth must stay below the nearest background depth"),
                    (self.noise < 0, "noise must be >= 0"), (self.focal <= 0, "focal must be > 0")]
        for bad, message in problems:
            if bad:
                raise ConfigError(f"SceneConfig.{message}, got {self}")


PRESETS: dict[str, SceneConfig] = {
    "default": SceneConfig(),
    # Objects are static in the world: all motion is camera parallax.
    "camera": SceneConfig(object_speed=0.0, object_rotation=0.0, object_scaling=0.0,
                          camera_rotation=0.0, camera_zoom=0.0),
    "objects": SceneConfig(camera_rotation=0.0, camera_zoom=0.0),
    "roll_zoom": SceneConfig(camera_rotation=2.5, camera_zoom=0.04),
    "parts": SceneConfig(part_object_prob=1.0, num_objects=(1, 3)),
    "stereo": SceneConfig(stereo=True),
}



def resolve_config(config: SceneConfig | None, preset: str | None,
                   overrides: dict[str, Any]) -> SceneConfig:
    """The SceneConfig that ``make_scene`` uses; unknown names raise ConfigError with a hint."""
    if config is not None and preset is not None:
        raise ConfigError("pass either config or preset to make_scene, not both")
    if config is None:
        name = preset or "default"
        if name not in PRESETS:
            hint = did_you_mean(name, PRESETS)
            raise ConfigError(f"unknown scene preset {name!r}" + (hint or f"; choose from {sorted(PRESETS)}"))
        config = PRESETS[name]
    names = {f.name for f in dataclasses.fields(SceneConfig)}
    for key in overrides:
        if key not in names:
            raise ConfigError(f"unknown SceneConfig field {key!r}" + did_you_mean(key, names))
    return dataclasses.replace(config, **overrides) if overrides else config


def check_size(size: Size) -> Size:
    """``(H, W)`` as ints, each at least 8 pixels; ConfigError otherwise."""
    min_side = 8
    if len(size) != 2 or min(int(size[0]), int(size[1])) < min_side:
        raise ConfigError(f"size must be (H, W) with both >= {min_side}, got {size}")
    return int(size[0]), int(size[1])
