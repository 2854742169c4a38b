"""Synthetic scenes with exact ground truth: flow, occlusion, Spelke instances and depth.

A scene is a stack of layers, drawn back to front: a textured background plane (index 0, instance
id 0) and textured objects (instance ids 1..N), each nearer than the background. Every layer has
its own 2-D affine motion per frame, ``A_t``: layer coordinates -> frame-t pixel coordinates. A
frame-t pixel ``x`` shows ``texture(A_t^-1 x)`` of the nearest layer covering it (bilinear sampling
of a procedural texture), so the ground truth is analytic:

- forward flow of a frame-t pixel on layer L: ``A_{t+1}(A_t^-1 x) - x`` (exact, in float64);
- occlusion: the pixel's forward position ``x + flow`` is covered at t+1 by a nearer layer
  (evaluated on the continuous shape, not on the pixel grid), **or it leaves the frame** (its
  position falls outside ``[-0.5, W-0.5) x [-0.5, H-0.5)``), as KITTI and Sintel treat
  out-of-frame pixels. ``Scene.out_of_frame`` holds the out-of-frame part alone;
- instance ids and depth: of the nearest layer whose hard mask (signed distance <= 0) covers the
  pixel centre. Colours are anti-aliased over a one-pixel band at shape edges; the ground truth is not.

Conventions (DESIGN.md section 2): pixel centres are at integer coordinates, points are ``(x, y) =
(column, row)`` from the top-left, flow is ``(dx, dy)``. Camera: pinhole with focal length
``focal * W`` pixels; camera translation gives parallax ``f * T / Z`` (so layers at different
depths move differently), camera roll and zoom act about the image centre. The background's
inverse depth is affine in image coordinates (a slanted plane), which keeps its motion affine.
In stereo mode the camera only translates along +x and objects are static, so the disparity
``-flow[..., 0]`` equals ``focal * W * baseline / depth`` exactly.

The Spelke part: one object (with probability ``part_object_prob``) is made of several disjoint
pieces, each with its own colours, that share one motion and one instance id. Colour or
connected-component grouping splits it; grouping by common motion does not.

Typical use::

    scene = make_scene(seed=3, size=(64, 64))                  # 2 frames
    f0, f1 = scene.pair(0)                                     # uint8 [H, W, 3] RGB
    scene.flow[0], scene.occlusion[0], scene.instances[0], scene.depth[0]
    make_scene(7, size=(128, 128), preset="stereo")            # or config=SceneConfig(...)
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cwm.errors import ConfigError

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
        if self.num_parts[0] < 2:
            raise ConfigError(f"SceneConfig.num_parts must start at 2 or more, got {self.num_parts}")
        if not 0 <= self.background_slant <= 0.5:
            raise ConfigError(f"SceneConfig.background_slant must be in [0, 0.5], "
                              f"got {self.background_slant}")
        # The slant raises the background's inverse depth by up to `slant` inside the frame; allow
        # half as much again for the area that camera motion brings into view.
        if self.object_depth[1] >= self.background_depth[0] / (1 + 1.5 * self.background_slant):
            raise ConfigError("SceneConfig.object_depth must stay below the nearest background "
                              f"depth, got {self.object_depth} and {self.background_depth}")
        if self.noise < 0 or self.focal <= 0:
            raise ConfigError(f"SceneConfig.noise must be >= 0 and focal > 0, "
                              f"got {self.noise} and {self.focal}")


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


def make_scene(seed: int, size: Size = (64, 64), num_frames: int = 2,
               config: SceneConfig | None = None, preset: str | None = None,
               **overrides: Any) -> Scene:
    """Generate a scene, deterministically from ``seed``.

    Args:
        seed: any non-negative int; equal inputs give bit-identical scenes.
        size: ``(H, W)`` in pixels, each >= 8.
        num_frames: T >= 2.
        config: ranges to draw from; default ``PRESETS[preset or "default"]``.
        preset: a name in ``PRESETS`` ("default", "camera", "objects", "roll_zoom", "parts",
            "stereo"); not together with ``config``.
        **overrides: SceneConfig fields to replace, e.g. ``stereo=True, noise=0.01``.
    """
    cfg = resolve_config(config, preset, overrides)
    height, width = _check_size(size)
    if int(num_frames) < 2:
        raise ConfigError(f"num_frames must be >= 2, got {num_frames}")
    rng = np.random.default_rng(int(seed))
    spec = sample_spec(rng, (height, width), int(num_frames), cfg)
    scene = render(spec, rng)
    scene.seed, scene.config = int(seed), cfg
    return scene


def resolve_config(config: SceneConfig | None, preset: str | None,
                   overrides: dict[str, Any]) -> SceneConfig:
    """The SceneConfig that ``make_scene`` uses; unknown names raise ConfigError with a hint."""
    if config is not None and preset is not None:
        raise ConfigError("pass either config or preset to make_scene, not both")
    if config is None:
        name = preset or "default"
        if name not in PRESETS:
            hint = difflib.get_close_matches(name, PRESETS, n=1)
            raise ConfigError(f"unknown scene preset {name!r}"
                              + (f"; did you mean {hint[0]!r}?" if hint else
                                 f"; choose from {sorted(PRESETS)}"))
        config = PRESETS[name]
    names = {f.name for f in dataclasses.fields(SceneConfig)}
    for key in overrides:
        if key not in names:
            hint = difflib.get_close_matches(key, names, n=1)
            raise ConfigError(f"unknown SceneConfig field {key!r}"
                              + (f"; did you mean {hint[0]!r}?" if hint else ""))
    return dataclasses.replace(config, **overrides) if overrides else config


def _check_size(size: Size) -> Size:
    min_side = 8
    if len(size) != 2 or min(int(size[0]), int(size[1])) < min_side:
        raise ConfigError(f"size must be (H, W) with both >= {min_side}, got {size}")
    return int(size[0]), int(size[1])


# ----------------------------------------------------------------------------------------------
# Shapes (signed distance in layer units, negative inside) and textures


@dataclass(frozen=True)
class Ellipse:
    """Ellipse with semi-axes ``axes`` rotated by ``angle`` (radians) about ``center``."""

    center: tuple[float, float]
    axes: tuple[float, float]
    angle: float

    @property
    def radius(self) -> float:
        return float(np.hypot(*self.center) + max(self.axes))

    def sdf(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        du, dv = u - self.center[0], v - self.center[1]
        c, s = np.cos(self.angle), np.sin(self.angle)
        (a, b) = self.axes
        pa, qb = (c * du + s * dv) / a, (c * dv - s * du) / b
        r = np.sqrt(pa * pa + qb * qb)
        # First-order distance (r - 1) / |grad r|; |grad r| >= 1 / max(a, b) everywhere.
        grad = np.sqrt((pa / a) ** 2 + (qb / b) ** 2) / np.maximum(r, 1e-9)
        return (r - 1.0) / np.maximum(grad, 1.0 / max(a, b))


@dataclass(frozen=True)
class Polygon:
    """Convex polygon; ``vertices [K, 2]`` ``(x, y)`` in order around the centroid."""

    vertices: np.ndarray

    @property
    def radius(self) -> float:
        return float(np.linalg.norm(self.vertices, axis=1).max())

    def sdf(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        vert = self.vertices
        edges = np.roll(vert, -1, axis=0) - vert
        normals = np.stack([edges[:, 1], -edges[:, 0]], axis=1)
        normals /= np.linalg.norm(normals, axis=1, keepdims=True)
        inward = np.einsum("ij,ij->i", normals, vert.mean(axis=0) - vert) > 0
        normals[inward] *= -1                                  # outward normals
        offsets = np.einsum("ij,ij->i", normals, vert)
        dist = normals[0, 0] * u + normals[0, 1] * v - offsets[0]
        for (nx, ny), off in zip(normals[1:], offsets[1:]):
            dist = np.maximum(dist, nx * u + ny * v - off)
        return dist


@dataclass(frozen=True)
class Blob:
    """Star-shaped blob ``r(theta) = base * (1 + sum_k amp_k cos(k theta + phase_k))``, k = 2, 3, ..."""

    center: tuple[float, float]
    base: float
    amps: tuple[float, ...]
    phases: tuple[float, ...]

    @property
    def radius(self) -> float:
        return float(np.hypot(*self.center) + self.base * (1 + sum(self.amps)))

    def sdf(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        du, dv = u - self.center[0], v - self.center[1]
        theta = np.arctan2(dv, du)
        r = np.ones_like(theta)
        for k, (amp, phase) in enumerate(zip(self.amps, self.phases), start=2):
            r += amp * np.cos(k * theta + phase)
        return np.hypot(du, dv) - self.base * r


@dataclass(frozen=True)
class Union:
    """Disjoint pieces of one object (the Spelke part object)."""

    pieces: tuple[Ellipse | Polygon | Blob, ...]

    @property
    def radius(self) -> float:
        return max(piece.radius for piece in self.pieces)

    def sdf(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return np.min([piece.sdf(u, v) for piece in self.pieces], axis=0)

    def piece_index(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Index of the nearest piece at each point."""
        return np.argmin([piece.sdf(u, v) for piece in self.pieces], axis=0)


Shape = Ellipse | Polygon | Blob | Union


def random_shape(rng: np.random.Generator, radius: float,
                 center: tuple[float, float] = (0.0, 0.0)) -> Ellipse | Polygon | Blob:
    """An ellipse, convex polygon or blob that fits in a disc of ``radius`` around ``center``."""
    kind = int(rng.integers(3))
    if kind == 0:
        return Ellipse(center, (radius, radius * rng.uniform(0.5, 1.0)), rng.uniform(0, np.pi))
    if kind == 1:
        count = int(rng.integers(3, 7))
        angles = (np.arange(count) + rng.uniform(-0.3, 0.3, count)) * 2 * np.pi / count
        angles += rng.uniform(0, 2 * np.pi)
        dist = radius * rng.uniform(0.75, 1.0, count)
        vert = np.stack([dist * np.cos(angles), dist * np.sin(angles)], 1) + np.asarray(center)
        return Polygon(vert)
    max_total_amp = 0.3
    amps = tuple(rng.uniform(0, max_total_amp / 3, 3))
    return Blob(center, radius / (1 + sum(amps)), amps, tuple(rng.uniform(0, 2 * np.pi, 3)))


def union_of_pieces(rng: np.random.Generator, radius: float, count: int) -> Union:
    """``count`` disjoint pieces arranged around the origin, within about ``radius``."""
    piece_radius = radius * rng.uniform(0.42, 0.55)
    gap = max(2.0, 0.2 * piece_radius)                   # pixels of background between pieces
    dist = max(radius - piece_radius, (piece_radius + gap / 2) / np.sin(np.pi / count))
    start = rng.uniform(0, 2 * np.pi)
    pieces = []
    for i in range(count):
        angle = start + 2 * np.pi * i / count
        pieces.append(random_shape(rng, piece_radius, (dist * np.cos(angle), dist * np.sin(angle))))
    return Union(tuple(pieces))


# Amplitude of each noise octave, finest (4 px) to coarsest (128 px): luminance, then colour.
_OCTAVE_CELLS = (4, 8, 16, 32, 64, 128)
_LUMA_AMPS = (0.04, 0.07, 0.10, 0.12, 0.12, 0.10)
_CHROMA_AMPS = (0.0, 0.04, 0.05, 0.06, 0.07, 0.07)


def _fractal_noise(rng: np.random.Generator, size: Size) -> np.ndarray:
    """Multi-octave smooth noise ``[h, w, 4]`` (luminance, then 3 colour channels).

    Built coarse to fine: upsample the running sum 2x (bicubic), add the next octave's random grid,
    and finally upsample 4x to pixels, so each octave is a random grid of spacing ``cell`` px.
    """
    import cv2

    height, width = size
    levels = [i for i, cell in enumerate(_OCTAVE_CELLS) if cell <= max(size)]
    amps = np.stack([_LUMA_AMPS, _CHROMA_AMPS, _CHROMA_AMPS, _CHROMA_AMPS], 1).astype(np.float32)
    coarsest = _OCTAVE_CELLS[levels[-1]]
    rows, cols = -(-height // coarsest) + 2, -(-width // coarsest) + 2
    grid = rng.standard_normal((rows, cols, 4)).astype(np.float32) * amps[levels[-1]]
    for level in reversed(levels[:-1]):
        grid = cv2.resize(grid, (cols * 2, rows * 2), interpolation=cv2.INTER_CUBIC)
        cell = _OCTAVE_CELLS[level]                 # keep only the cells that cover the image
        rows, cols = -(-height // cell) + 2, -(-width // cell) + 2
        grid = grid[:rows, :cols] + rng.standard_normal((rows, cols, 4)).astype(np.float32) * amps[level]
    finest = _OCTAVE_CELLS[levels[0]]
    up = cv2.resize(grid, (cols * finest, rows * finest), interpolation=cv2.INTER_CUBIC)
    oy = int(rng.integers(0, up.shape[0] - height + 1))
    ox = int(rng.integers(0, up.shape[1] - width + 1))
    return up[oy:oy + height, ox:ox + width]


def procedural_texture(rng: np.random.Generator, size: Size) -> np.ndarray:
    """Multi-scale coloured texture ``[h, w, 3]`` float32 in [0, 1].

    Luminance and colour noise octaves (4 to 128 px), an optional grating and a few soft spots.
    The finest detail is about 4 px wide so that bilinear resampling stays accurate: the ground
    truth test warps frames with bilinear sampling.
    """
    import cv2

    height, width = size
    longest = max(size)
    base = rng.uniform(0.25, 0.75, 3).astype(np.float32)
    luma_dir = (0.7 + 0.6 * rng.random(3)).astype(np.float32)
    noise = _fractal_noise(rng, size)
    tex = base + noise[..., :1] * luma_dir + noise[..., 1:]
    if rng.random() < 0.5:                                 # a grating, 6 to 16 px period
        angle, period, phase = rng.uniform(0, np.pi), rng.uniform(6, 16), rng.uniform(0, 6.3)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        wave = np.sin((xs * np.cos(angle) + ys * np.sin(angle)) * (2 * np.pi / period) + phase)
        tex += wave[..., None] * rng.uniform(-0.12, 0.12, 3).astype(np.float32)
    for _ in range(int(rng.integers(1, 5))):               # soft spots of a new colour
        centre = (int(rng.integers(width)), int(rng.integers(height)))
        axes = tuple(int(a) for a in rng.integers(2, max(3, longest // 6), 2))
        colour = tuple(float(c) for c in rng.uniform(0, 1, 3))
        cv2.ellipse(tex, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1, cv2.LINE_AA)
    blur_sigma = 0.8                                       # keeps edges resampling-friendly
    tex = cv2.GaussianBlur(tex, (0, 0), blur_sigma)
    return np.clip(tex, 0.0, 1.0)


def sample_bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``image [h, w, 3]`` float32 at positions ``(x, y)`` (equal shapes).

    Positions outside the image are clamped (edge replication). Returns ``[*x.shape, 3]``
    float32. cv2.remap rounds positions to 1/32 px, so a sample sits within 1/64 px of the
    analytic position: that is the renderer's only departure from the exact ground truth.
    """
    import cv2

    return cv2.remap(image, x.astype(np.float32), y.astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


# ----------------------------------------------------------------------------------------------
# Sampling a scene description


def _similarity(angle: float, scale: float, tx: float, ty: float) -> np.ndarray:
    """3x3 homogeneous map ``x -> scale * R(angle) x + (tx, ty)``."""
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[c, -s, tx], [s, c, ty], [0.0, 0.0, 1.0]])


def _about(center: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Conjugate ``m`` so that it acts about ``center`` instead of the origin."""
    return _similarity(0, 1, *center) @ m @ _similarity(0, 1, *(-center))


@dataclass
class _Camera:
    velocity: np.ndarray   # world translation per frame, (tx, ty)
    roll: float            # radians per frame
    zoom: float            # scale factor per frame
    focal: float           # pixels
    center: np.ndarray     # image centre (x, y)

    def view(self, t: int) -> np.ndarray:
        """Roll and zoom of frame t, about the image centre."""
        return _about(self.center, _similarity(t * self.roll, self.zoom ** t, 0.0, 0.0))

    def parallax(self, t: int, plane: tuple[float, float, float]) -> np.ndarray:
        """Maps frame-0 pixels of a plane (inverse depth a*x + b*y + c) to frame t, before roll/zoom."""
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
    """Texture over layer coordinates ``[-edge, edge]^2``; each piece of a Union gets its own."""
    size = (2 * edge + 1, 2 * edge + 1)
    if not isinstance(shape, Union):
        return procedural_texture(rng, size)
    textures = np.stack([procedural_texture(rng, size) for _ in shape.pieces])
    coords = np.arange(-edge, edge + 1, dtype=np.float64)
    piece = shape.piece_index(coords[None, :], coords[:, None])     # [h, w]
    return np.take_along_axis(textures, piece[None, ..., None], axis=0)[0]


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
            @ _similarity(t * spin, grow ** t, *(start + t * velocity))
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


@dataclass
class _Grid:
    xs: np.ndarray = field(repr=False)   # [H, W] float64 pixel-centre x
    ys: np.ndarray = field(repr=False)   # [H, W] float64 pixel-centre y


def _layer_window(layer: Layer, m: np.ndarray, size: Size) -> tuple[slice, slice]:
    """Rows and columns of frame pixels that the layer can cover under map ``m``."""
    height, width = size
    if layer.shape is None:
        return slice(0, height), slice(0, width)
    reach = layer.shape.radius * np.linalg.norm(m[:2, :2], ord=2) + 1.0
    cx, cy = m[0, 2], m[1, 2]
    x0, x1 = max(int(np.floor(cx - reach)), 0), min(int(np.ceil(cx + reach)) + 1, width)
    y0, y1 = max(int(np.floor(cy - reach)), 0), min(int(np.ceil(cy + reach)) + 1, height)
    return slice(y0, max(y0, y1)), slice(x0, max(x0, x1))


def _to_layer(m: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Layer coordinates of frame points ``(xs, ys)`` under the layer-to-frame map ``m``."""
    inv = np.linalg.inv(m)
    return inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2], inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]


def _render_frame(spec: SceneSpec, t: int, grid: _Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Colour ``[H, W, 3]`` float32, layer index ``[H, W]`` int16, inverse depth ``[H, W]``."""
    height, width = spec.size
    image = np.zeros((height, width, 3), np.float32)
    index = np.zeros((height, width), np.int16)
    inv_depth = np.zeros((height, width), np.float64)
    for li, layer in enumerate(spec.layers):
        m = layer.motion[t]
        rows, cols = _layer_window(layer, m, spec.size)
        xs, ys = grid.xs[rows, cols], grid.ys[rows, cols]
        if xs.size == 0:
            continue
        u, v = _to_layer(m, xs, ys)
        ox, oy = layer.texture_origin
        colour = sample_bilinear(layer.texture, u - ox, v - oy)
        a, b, c = layer.inverse_depth
        if layer.shape is None:
            image[rows, cols], index[rows, cols] = colour, li
            inv_depth[rows, cols] = a * u + b * v + c
            continue
        # Signed distance in frame pixels: layer units times the layer's scale at frame t.
        dist = layer.shape.sdf(u, v) * np.sqrt(abs(np.linalg.det(m[:2, :2])))
        alpha = np.clip(0.5 - dist, 0.0, 1.0).astype(np.float32)[..., None]
        region = image[rows, cols]
        region += alpha * (colour - region)
        hard = dist <= 0
        index[rows, cols][hard] = li
        inv_depth[rows, cols][hard] = c
    return image, index, inv_depth


def _flow_and_occlusion(spec: SceneSpec, t: int, index: np.ndarray,
                        grid: _Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact forward flow ``[H, W, 2]``, occlusion and out-of-frame masks ``[H, W]`` of frame t."""
    height, width = spec.size
    flow = np.zeros((height, width, 2), np.float64)
    occluded = np.zeros((height, width), bool)
    for li, layer in enumerate(spec.layers):
        sel = index == li
        if not sel.any():
            continue
        xs, ys = grid.xs[sel], grid.ys[sel]
        step = layer.motion[t + 1] @ np.linalg.inv(layer.motion[t])
        px = step[0, 0] * xs + step[0, 1] * ys + step[0, 2]
        py = step[1, 0] * xs + step[1, 1] * ys + step[1, 2]
        flow[sel] = np.stack([px - xs, py - ys], axis=-1)
        covered = np.zeros(xs.shape, bool)
        for nearer in spec.layers[li + 1:]:
            u, v = _to_layer(nearer.motion[t + 1], px, py)
            covered |= nearer.shape.sdf(u, v) <= 0
        occluded[sel] = covered
    half = 0.5
    end_x, end_y = grid.xs + flow[..., 0], grid.ys + flow[..., 1]
    outside = (end_x < -half) | (end_x >= width - half) | (end_y < -half) | (end_y >= height - half)
    return flow.astype(np.float32), occluded | outside, outside


def render(spec: SceneSpec, rng: np.random.Generator | None = None) -> Scene:
    """Render a SceneSpec into frames and ground truth. ``rng`` draws the pixel noise, if any."""
    height, width = spec.size
    num_frames = spec.layers[0].motion.shape[0]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    grid = _Grid(xs, ys)
    images, indices, inv_depths = zip(*(_render_frame(spec, t, grid) for t in range(num_frames)))
    flows, occlusions, outsides = zip(*(_flow_and_occlusion(spec, t, indices[t], grid)
                                        for t in range(num_frames - 1)))
    ids = np.array([layer.instance_id for layer in spec.layers], np.int32)
    pixels = np.stack(images) * 255.0
    if spec.noise > 0:
        rng = rng if rng is not None else np.random.default_rng(0)
        pixels += rng.normal(0.0, spec.noise * 255.0, pixels.shape).astype(np.float32)
    frames = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    return Scene(frames=frames, flow=np.stack(flows), occlusion=np.stack(occlusions),
                 out_of_frame=np.stack(outsides), instances=ids[np.stack(indices)],
                 depth=(1.0 / np.stack(inv_depths)).astype(np.float32), spec=spec)
