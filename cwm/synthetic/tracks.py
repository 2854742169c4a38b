"""Exact point tracks of synthetic scenes, and a TAP-Vid-format synthetic set.

Every layer of a scene moves by a known affine map per frame (``Layer.motion``, layer -> frame-t
pixels), so a point is tracked analytically, not by composing sampled flows: a point ``p`` of
frame ``t0`` on layer ``L`` (the nearest layer whose hard mask holds it) is at
``A_t^L (A_t0^L)^-1 p`` in frame ``t``, in float64. It is occluded in frame ``t`` when a nearer
layer's hard mask covers that position or it leaves the frame (``[-0.5, W-0.5) x [-0.5, H-0.5)``)
-- the same tests the renderer uses for ``Scene.flow`` and ``Scene.occlusion``, so a track's step
from a pixel centre of frame t equals ``scene.flow[t]`` there and its occlusion flag equals
``scene.occlusion[t]``.

Conventions: cwm pixels, ``(x, y) = (column, row)``, pixel centres at integers. The TAP-Vid
layout (:func:`tapvid_entry`) stores ``points`` normalised to [0, 1] with pixel centres at
``(x + 0.5) / W``, as the TAP-Vid pickles do.

    scene = make_scene(0, (64, 64), num_frames=16)
    tracks, occluded = scene_tracks(scene, query_frames, query_xy)     # [N, T, 2], [N, T]
    data = make_tapvid_set(20, size=(64, 64), num_frames=16)           # {name: entry}, DAVIS layout
"""
from __future__ import annotations

from typing import Any

import numpy as np

from cwm.errors import InputError
from cwm.synthetic.scene import Scene

#: Slower motions than the two-frame presets, so that points stay in view over a longer clip.
TAPVID_OVERRIDES: dict[str, Any] = {"object_speed": 0.015, "camera_speed": 0.01,
                                    "camera_rotation": 0.5, "camera_zoom": 0.005}


def _map(m: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Points ``p [N, 2]`` by affine maps ``m [N, 3, 3]`` (or one ``[3, 3]``) -> ``[N, 2]``."""
    return np.einsum("...ij,...j->...i", m[..., :2, :2], p) + m[..., :2, 2]


def _covers(layer, frame: int, p: np.ndarray) -> np.ndarray:
    """``[N]`` bool: the layer's hard mask holds frame-``frame`` pixel positions ``p [N, 2]``."""
    if layer.shape is None:
        return np.ones(len(p), bool)
    u, v = _map(np.linalg.inv(layer.motion[frame]), p).T
    return layer.shape.sdf(u, v) <= 0


def layer_at(scene: Scene, frame: int, xy) -> np.ndarray:
    """``[N]`` int: index into ``scene.spec.layers`` of the nearest layer at points ``xy [N, 2]``
    of frame ``frame`` (what the renderer's ``instances`` records at pixel centres)."""
    p = np.asarray(xy, np.float64).reshape(-1, 2)
    index = np.zeros(len(p), np.int64)
    for li, layer in enumerate(scene.spec.layers):
        index[_covers(layer, frame, p)] = li
    return index


def scene_tracks(scene: Scene, query_frames, query_xy) -> tuple[np.ndarray, np.ndarray]:
    """Exact tracks of query points through every frame of ``scene``.

    Args:
        scene: a :class:`cwm.synthetic.Scene` (T frames, H x W).
        query_frames: ``[N]`` int, the frame of each query.
        query_xy: ``[N, 2]`` ``(x, y)`` pixels of each query in its frame (it is visible there by
            definition: the point belongs to the nearest layer at that position).
    Returns:
        ``tracks [N, T, 2]`` float64 ``(x, y)`` pixels (also where occluded: the hidden point's
        true position) and ``occluded [N, T]`` bool (covered by a nearer layer, or out of frame).
    """
    frames = np.asarray(query_frames, np.int64).reshape(-1)
    p = np.asarray(query_xy, np.float64).reshape(-1, 2)
    num, (height, width), count = len(p), scene.size, scene.num_frames
    if len(frames) != num or ((frames < 0) | (frames >= count)).any():
        raise InputError(f"query_frames must be [N] frames in 0..{count - 1} for N = {num} points")
    layers = scene.spec.layers
    owner = np.zeros(num, np.int64)
    for t in np.unique(frames):
        sel = frames == t
        owner[sel] = layer_at(scene, int(t), p[sel])
    tracks = np.zeros((num, count, 2))
    occluded = np.zeros((num, count), bool)
    for li, layer in enumerate(layers):
        sel = np.flatnonzero(owner == li)
        if not len(sel):
            continue
        to_layer = np.linalg.inv(layer.motion)[frames[sel]]        # [n, 3, 3]
        for t in range(count):
            # A_t A_t0^-1 as one matrix product, as the renderer computes its flow.
            here = _map(layer.motion[t] @ to_layer, p[sel])
            here[frames[sel] == t] = p[sel][frames[sel] == t]         # exactly the query itself
            tracks[sel, t] = here
            hidden = np.zeros(len(sel), bool)
            for nearer in layers[li + 1:]:
                hidden |= _covers(nearer, t, here)
            outside = ((here[:, 0] < -0.5) | (here[:, 0] >= width - 0.5)
                       | (here[:, 1] < -0.5) | (here[:, 1] >= height - 0.5))
            occluded[sel, t] = hidden | outside
    return tracks, occluded


def sample_queries(scene: Scene, num_points: int, rng: np.random.Generator,
                   object_fraction: float = 0.5, first_frame_fraction: float = 0.5
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Random query points: ``(frames [N] int, xy [N, 2])``, about ``object_fraction`` of them on
    objects (when there are any in view), ``first_frame_fraction`` of them in frame 0 and the rest
    in uniformly drawn frames; positions uniform over the frame (continuous, not pixel centres)."""
    height, width = scene.size
    candidates = 8 * num_points
    frames = np.where(rng.random(candidates) < first_frame_fraction, 0,
                      rng.integers(0, scene.num_frames, candidates))
    xy = rng.uniform([-0.5, -0.5], [width - 0.5, height - 0.5], (candidates, 2))
    on_object = np.zeros(candidates, bool)
    for t in np.unique(frames):
        sel = frames == t
        on_object[sel] = layer_at(scene, int(t), xy[sel]) > 0
    wanted = int(round(object_fraction * num_points))
    objects = np.flatnonzero(on_object)[:wanted]
    rest = np.flatnonzero(~on_object)[: num_points - len(objects)]
    pick = np.sort(np.concatenate([objects, rest]))
    return frames[pick], xy[pick]


def tapvid_entry(scene: Scene, tracks: np.ndarray, occluded: np.ndarray) -> dict[str, np.ndarray]:
    """One video in the TAP-Vid pickle layout: ``video`` uint8 ``[T, H, W, 3]``, ``points``
    float64 ``[N, T, 2]`` ``(x, y)`` in [0, 1] (``(x + 0.5) / W``), ``occluded`` bool ``[N, T]``."""
    height, width = scene.size
    points = (np.asarray(tracks, np.float64) + 0.5) / np.array([width, height], np.float64)
    return {"video": scene.frames, "points": points, "occluded": np.asarray(occluded, bool)}


def make_tapvid_set(num_videos: int = 20, size: tuple[int, int] = (64, 64), num_frames: int = 16,
                    num_points: int = 32, seed: int = 0, preset: str | None = None,
                    **overrides: Any) -> dict[str, dict[str, np.ndarray]]:
    """A synthetic point-tracking set in the TAP-Vid DAVIS layout ``{name: entry}``
    (:func:`tapvid_entry`), with exact tracks. Video ``i`` is ``make_scene(seed + i, ...)``
    with :data:`TAPVID_OVERRIDES` (then ``overrides``); its queries are drawn by
    :func:`sample_queries` from ``numpy.random.default_rng(seed + i)``. Deterministic."""
    from cwm.synthetic import make_scene

    options = {**TAPVID_OVERRIDES, **overrides}
    data = {}
    for i in range(int(num_videos)):
        scene = make_scene(seed + i, size, num_frames, preset=preset, **options)
        frames, xy = sample_queries(scene, num_points, np.random.default_rng([seed + i, 1]))
        tracks, occluded = scene_tracks(scene, frames, xy)
        data[f"synthetic_{seed + i:04d}"] = tapvid_entry(scene, tracks, occluded)
    return data
