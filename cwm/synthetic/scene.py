"""The scene types: :class:`Layer` and :class:`SceneSpec` (what to render) and :class:`Scene`
(frames with their ground truth).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cwm.synthetic.config import SceneConfig, Size
from cwm.synthetic.shapes import Shape


@dataclass(frozen=True)
class Layer:
    """One rigidly moving textured layer.

    ``texture [h, w, 3]`` float32 in [0, 1]; texel ``(i, j)`` sits at layer coordinates
    ``texture_origin + (j, i)``. ``motion [T, 3, 3]`` float64: homogeneous affine maps from layer
    coordinates to frame-t pixel coordinates ``(x, y)``. ``inverse_depth (a, b, c)``: inverse depth
    ``a*u + b*v + c`` at layer coordinates ``(u, v)`` (constant for objects). ``shape`` is None for
    the background, which covers everything.
    """

    instance_id: int
    texture: np.ndarray
    texture_origin: tuple[float, float]
    motion: np.ndarray
    inverse_depth: tuple[float, float, float]
    shape: Shape | None = None


@dataclass(frozen=True)
class SceneSpec:
    """Everything needed to render a scene: ``layers`` back to front (index 0 is the background)."""

    size: Size
    layers: tuple[Layer, ...]
    stereo: bool = False
    noise: float = 0.0


@dataclass
class Scene:
    """A rendered clip of T >= 2 frames with exact ground truth (see the module docstring).

    Attributes:
        frames: ``[T, H, W, 3]`` uint8 RGB.
        flow: ``[T-1, H, W, 2]`` float32, forward flow ``(dx, dy)`` from frame t to t+1.
        occlusion: ``[T-1, H, W]`` bool, frame-t pixel not visible in t+1 (covered or out of frame).
        out_of_frame: ``[T-1, H, W]`` bool, the part of ``occlusion`` that leaves the frame.
        instances: ``[T, H, W]`` int32, 0 = background, 1..N = objects (Spelke objects).
        depth: ``[T, H, W]`` float32, positive depth of the visible surface.
        spec: the layers and motions that produced the scene.
        seed, config: the generator inputs (None when rendered from a hand-made spec).
    """

    frames: np.ndarray
    flow: np.ndarray
    occlusion: np.ndarray
    out_of_frame: np.ndarray
    instances: np.ndarray
    depth: np.ndarray
    spec: SceneSpec
    seed: int | None = None
    config: SceneConfig | None = None

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def size(self) -> Size:
        """``(H, W)``."""
        return (int(self.frames.shape[1]), int(self.frames.shape[2]))

    @property
    def stereo(self) -> bool:
        return self.spec.stereo

    @property
    def num_objects(self) -> int:
        return len(self.spec.layers) - 1

    def pair(self, t: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Frames t and t+1, each uint8 ``[H, W, 3]``."""
        return self.frames[t], self.frames[t + 1]

    def inverse_depth(self, t: int = 0) -> np.ndarray:
        """``[H, W]`` float32 ``1 / depth`` of frame t (proportional to stereo disparity)."""
        return (1.0 / self.depth[t]).astype(np.float32)
