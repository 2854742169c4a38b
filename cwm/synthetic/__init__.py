"""Synthetic scenes with exact ground truth: flow, occlusion, Spelke instances and depth.

A scene is a stack of layers drawn back to front: a textured background plane (instance id 0)
and textured objects (ids 1..N), all nearer than the background. Each layer has a 2-D affine
motion per frame, ``A_t``: layer coordinates -> frame-t pixels; pixel x of frame t shows
``texture(A_t^-1 x)`` of the nearest layer covering it. So the ground truth is analytic:

- flow of a frame-t pixel on layer L: ``A_{t+1}(A_t^-1 x) - x``, computed in float64;
- occlusion: ``x + flow`` is covered at t+1 by a nearer layer (tested on the continuous shape),
  **or leaves the frame** (falls outside ``[-0.5, W-0.5) x [-0.5, H-0.5)``), as in KITTI and
  Sintel; ``Scene.out_of_frame`` holds that part alone;
- instances and depth: of the nearest layer whose hard mask (signed distance <= 0) holds the
  pixel centre. Colours are anti-aliased over a one-pixel band at shape edges; the ground
  truth is not.

Conventions (docs/design.md §2): pixel centres at integer coordinates, points ``(x, y) =
(column, row)`` from the top-left, flow ``(dx, dy)``. Pinhole camera, focal length ``focal * W``
px: camera translation T moves a point at depth Z by ``f T / Z`` (parallax); roll and zoom act
about the image centre. The background's inverse depth is affine in the image (a slanted plane),
which keeps its motion affine. In stereo mode the camera moves along +x only and objects are
static, so frame 1 is the right view and the disparity ``-flow[..., 0]`` is ``f * baseline / Z``.

Spelke objects: with probability ``part_object_prob`` one object is several disjoint pieces with
their own colours, one motion and one id: grouping by colour or connectivity splits it, grouping
by common motion does not.

    scene = make_scene(3, size=(64, 64))                      # 2 frames, preset "default"
    frame0, frame1 = scene.pair(0)                            # uint8 [H, W, 3] RGB
    scene.flow[0], scene.occlusion[0], scene.instances[0], scene.depth[0]
    make_scene(7, (128, 128), preset="stereo", noise=0.01)    # or config=SceneConfig(...)

Modules: :mod:`~cwm.synthetic.config` (SceneConfig, PRESETS), :mod:`~cwm.synthetic.shapes`
(signed distance shapes), :mod:`~cwm.synthetic.tracks` (exact point tracks, a TAP-Vid-format
set), :mod:`~cwm.synthetic.textures`, :mod:`~cwm.synthetic.sampling` (camera,
layers and motions), :mod:`~cwm.synthetic.render` (frames and exact ground truth) and
:mod:`~cwm.synthetic.scene` (the Layer, SceneSpec and Scene types).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cwm.errors import ConfigError
from cwm.synthetic.config import PRESETS, SceneConfig, Size, check_size, resolve_config
from cwm.synthetic.render import render
from cwm.synthetic.sampling import sample_spec
from cwm.synthetic.scene import Layer, Scene, SceneSpec
from cwm.synthetic.shapes import Blob, Ellipse, Polygon, Shape, Union, random_shape, union_of_pieces
from cwm.synthetic.textures import procedural_texture, sample_bilinear
from cwm.synthetic.tracks import make_tapvid_set, scene_tracks

__all__ = ["PRESETS", "Blob", "Ellipse", "Layer", "Polygon", "Scene", "SceneConfig", "SceneSpec", "Shape",
           "Size", "Union", "make_scene", "make_tapvid_set", "procedural_texture", "random_shape", "render",
           "resolve_config", "sample_bilinear", "sample_spec", "scene_tracks", "union_of_pieces"]


def make_scene(seed: int, size: Size = (64, 64), num_frames: int = 2,
               config: SceneConfig | None = None, preset: str | None = None,
               **overrides: Any) -> Scene:
    """Generate a scene, deterministically from ``seed``.

    Args:
        seed: int >= 0; equal arguments give bit-identical scenes.
        size: ``(H, W)`` in pixels, each >= 8.
        num_frames: T >= 2.
        config: ranges to draw from; default ``PRESETS[preset or "default"]``.
        preset: a name in ``PRESETS`` ("default", "camera", "objects", "roll_zoom", "parts",
            "stereo"); not together with ``config``.
        **overrides: SceneConfig fields to replace, e.g. ``stereo=True, noise=0.01``.
    """
    cfg = resolve_config(config, preset, overrides)
    height, width = check_size(size)
    if int(num_frames) < 2 or int(seed) < 0:
        raise ConfigError(f"num_frames must be >= 2 and seed >= 0, got {num_frames} and {seed}")
    rng = np.random.default_rng(int(seed))
    spec = sample_spec(rng, (height, width), int(num_frames), cfg)
    scene = render(spec, rng)
    scene.seed, scene.config = int(seed), cfg
    return scene
