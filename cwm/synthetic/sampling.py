"""Sampling a scene description: camera, background plane and objects, each with its motions."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cwm.synthetic.config import SceneConfig, Size
from cwm.synthetic.scene import Layer, SceneSpec
from cwm.synthetic.shapes import Shape, Union, random_shape, union_of_pieces
from cwm.synthetic.textures import procedural_texture


def similarity(angle: float, scale: float, tx: float, ty: float) -> np.ndarray:
    """3x3 homogeneous map ``x -> scale * R(angle) x + (tx, ty)``."""
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[c, -s, tx], [s, c, ty], [0.0, 0.0, 1.0]])


def about_point(center: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Conjugate ``m`` so that it acts about ``center`` instead of the origin."""
    return similarity(0, 1, *center) @ m @ similarity(0, 1, *(-center))


@dataclass
class _Camera:
    velocity: np.ndarray   # world translation per frame, (tx, ty)
    roll: float            # radians per frame
    zoom: float            # scale factor per frame
    focal: float           # pixels
    center: np.ndarray     # image centre (x, y)

    def view(self, t: int) -> np.ndarray:
        """Roll and zoom of frame t, about the image centre."""
        return about_point(self.center, similarity(t * self.roll, self.zoom ** t, 0.0, 0.0))

    def parallax(self, t: int, plane: tuple[float, float, float]) -> np.ndarray:
        """Frame-0 pixels of a plane (inverse depth a*x + b*y + c) to frame t, before roll/zoom."""
        a, b, c = plane
        shift = -self.focal * t * self.velocity   # pixel shift per unit inverse depth
        return np.array([[1 + shift[0] * a, shift[0] * b, shift[0] * c],
                         [shift[1] * a, 1 + shift[1] * b, shift[1] * c], [0.0, 0.0, 1.0]])


def _sample_camera(rng: np.random.Generator, cfg: SceneConfig, size: Size,
                   mean_bg_inverse_depth: float) -> _Camera:
    height, width = size
    side = min(size)
    focal = cfg.focal * width
    speed_fraction_min = 0.3   # never a static camera: parallax is what depth probes read
    shift = rng.uniform(speed_fraction_min, 1.0) * cfg.camera_speed * side
    angle = 0.0 if cfg.stereo else rng.uniform(0, 2 * np.pi)
    direction = np.array([np.cos(angle), np.sin(angle)])
    velocity = direction * shift / (focal * mean_bg_inverse_depth)
    roll = 0.0 if cfg.stereo else np.deg2rad(rng.uniform(-1, 1) * cfg.camera_rotation)
    zoom = 1.0 if cfg.stereo else 1.0 + rng.uniform(-1, 1) * cfg.camera_zoom
    center = np.array([(width - 1) / 2, (height - 1) / 2])
    return _Camera(velocity, roll, zoom, focal, center)


def _background_plane(rng: np.random.Generator, cfg: SceneConfig,
                      size: Size) -> tuple[float, float, float]:
    """Inverse-depth plane ``(a, b, c)`` over frame-0 pixel coordinates."""
    height, width = size
    inv_center = 1.0 / rng.uniform(*cfg.background_depth)
    slope = rng.uniform(-1, 1, 2) * cfg.background_slant / (2 * max(size))
    a, b = inv_center * slope
    c = inv_center * (1.0 - slope[0] * (width - 1) / 2 - slope[1] * (height - 1) / 2)
    return float(a), float(b), float(c)


def _background_layer(rng: np.random.Generator, cam: _Camera, plane: tuple[float, float, float],
                      size: Size, num_frames: int) -> Layer:
    motion = np.stack([cam.view(t) @ cam.parallax(t, plane) for t in range(num_frames)])
    height, width = size
    corners = np.array([[-1, -1, 1], [width, -1, 1], [-1, height, 1], [width, height, 1]], float)
    seen = np.concatenate([(np.linalg.inv(m) @ corners.T)[:2].T for m in motion])
    margin = 2
    low = np.floor(seen.min(axis=0)) - margin
    high = np.ceil(seen.max(axis=0)) + margin
    tex_w, tex_h = (high - low + 1).astype(int)
    texture = procedural_texture(rng, (tex_h, tex_w))
    return Layer(0, texture, (float(low[0]), float(low[1])), motion, plane)


def _object_texture(rng: np.random.Generator, shape: Shape, edge: int) -> np.ndarray:
    """Texture over layer coordinates ``[-edge, edge]^2``; each piece of a Union gets its colour."""
    tex = procedural_texture(rng, (2 * edge + 1, 2 * edge + 1))
    if not isinstance(shape, Union):
        return tex
    coords = np.arange(-edge, edge + 1, dtype=np.float64)
    piece = shape.piece_index(coords[None, :], coords[:, None])     # [h, w]
    shifts = rng.uniform(-0.4, 0.4, (len(shape.pieces), 3)).astype(np.float32)
    # Pieces are disjoint, so the colour steps between them fall outside the shape.
    return (0.5 + 0.48 * np.tanh((tex + shifts[piece] - 0.5) / 0.48)).astype(np.float32)


def _object_layers(rng: np.random.Generator, cfg: SceneConfig, cam: _Camera, size: Size,
                   num_frames: int) -> list[Layer]:
    height, width = size
    side = min(size)
    count = int(rng.integers(cfg.num_objects[0], cfg.num_objects[1] + 1))
    part_index = int(rng.integers(count)) if count and rng.random() < cfg.part_object_prob else -1
    static = cfg.stereo
    layers = []
    for k in range(count):
        radius = rng.uniform(*cfg.object_radius) * side
        if k == part_index:
            pieces = int(rng.integers(cfg.num_parts[0], cfg.num_parts[1] + 1))
            shape: Shape = union_of_pieces(rng, radius, pieces)
        else:
            shape = random_shape(rng, radius)
        edge = int(np.ceil(shape.radius)) + 2
        texture = _object_texture(rng, shape, edge)
        start = rng.uniform([0.15 * width, 0.15 * height], [0.85 * width, 0.85 * height])
        velocity = np.zeros(2) if static else rng.uniform(-1, 1, 2) * cfg.object_speed * side
        spin = 0.0 if static else np.deg2rad(rng.uniform(-1, 1) * cfg.object_rotation)
        grow = 1.0 if static else 1.0 + rng.uniform(-1, 1) * cfg.object_scaling
        inv_depth = 1.0 / rng.uniform(*cfg.object_depth)
        plane = (0.0, 0.0, inv_depth)
        motion = np.stack([
            cam.view(t) @ cam.parallax(t, plane)
            @ similarity(t * spin, grow ** t, *(start + t * velocity))
            for t in range(num_frames)])
        layers.append(Layer(k + 1, texture, (-edge, -edge), motion, plane, shape))
    # Painter's order: farthest object first (objects have constant depth).
    return sorted(layers, key=lambda layer: layer.inverse_depth[2])


def sample_spec(rng: np.random.Generator, size: Size, num_frames: int,
                cfg: SceneConfig) -> SceneSpec:
    """Draw a random scene description (camera, background and objects) from ``cfg``."""
    plane = _background_plane(rng, cfg, size)
    height, width = size
    mean_inv = plane[0] * (width - 1) / 2 + plane[1] * (height - 1) / 2 + plane[2]
    cam = _sample_camera(rng, cfg, size, mean_inv)
    background = _background_layer(rng, cam, plane, size, num_frames)
    objects = _object_layers(rng, cfg, cam, size, num_frames)
    return SceneSpec(size, (background, *objects), stereo=cfg.stereo, noise=cfg.noise)


# ----------------------------------------------------------------------------------------------
# Rendering
