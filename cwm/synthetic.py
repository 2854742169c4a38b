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

Conventions (DESIGN.md section 2): pixel centres at integer coordinates, points ``(x, y) =
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
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
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
        seed: int >= 0; equal arguments give bit-identical scenes.
        size: ``(H, W)`` in pixels, each >= 8.
        num_frames: T >= 2.
        config: ranges to draw from; default ``PRESETS[preset or "default"]``.
        preset: a name in ``PRESETS`` ("default", "camera", "objects", "roll_zoom", "parts",
            "stereo"); not together with ``config``.
        **overrides: SceneConfig fields to replace, e.g. ``stereo=True, noise=0.01``.
    """
    cfg = resolve_config(config, preset, overrides)
    height, width = _check_size(size)
    if int(num_frames) < 2 or int(seed) < 0:
        raise ConfigError(f"num_frames must be >= 2 and seed >= 0, got {num_frames} and {seed}")
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

    def __post_init__(self) -> None:
        vert = np.asarray(self.vertices, np.float64)
        edges = np.roll(vert, -1, axis=0) - vert
        normals = np.stack([edges[:, 1], -edges[:, 0]], axis=1)
        normals /= np.linalg.norm(normals, axis=1, keepdims=True)
        inward = np.einsum("ij,ij->i", normals, vert.mean(axis=0) - vert) > 0
        normals[inward] *= -1                                  # outward normals
        object.__setattr__(self, "_edges", [(nx, ny, nx * x + ny * y) for (nx, ny), (x, y)
                                            in zip(normals.tolist(), vert.tolist())])

    def sdf(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        # Max of the edge half-plane distances: exact inside, a lower bound outside.
        dist = None
        for nx, ny, offset in self._edges:
            d = nx * u + ny * v - offset
            dist = d if dist is None else np.maximum(dist, d, out=dist)
        return dist


@dataclass(frozen=True)
class Blob:
    """Star-shaped blob ``r(theta) = base * (1 + sum_k amp_k cos(k theta + phase_k))``, k >= 2."""

    center: tuple[float, float]
    base: float
    amps: tuple[float, ...]
    phases: tuple[float, ...]

    @property
    def radius(self) -> float:
        return float(np.hypot(*self.center) + self.base * (1 + sum(self.amps)))

    def sdf(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        z = (u - self.center[0]) + 1j * (v - self.center[1])
        dist = np.abs(z)
        unit = z / np.maximum(dist, 1e-9)               # exp(i theta)
        r = np.ones(dist.shape)
        power = unit
        for amp, phase in zip(self.amps, self.phases):  # cos(k theta + phase), k = 2, 3, ...
            power = power * unit
            r += amp * (power * np.exp(1j * phase)).real
        return dist - self.base * r


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
_LUMA_AMPS = (0.03, 0.07, 0.10, 0.12, 0.12, 0.10)
_CHROMA_AMPS = (0.0, 0.04, 0.05, 0.06, 0.07, 0.07)


def _fractal_colour(rng: np.random.Generator, size: Size, base: np.ndarray,
                    luma_dir: np.ndarray) -> np.ndarray:
    """Multi-octave smooth colour noise around ``base``: ``[h, w, 3]`` float32.

    Built coarse to fine on 4 channels (luminance, then 3 colour channels): upsample the running
    sum 2x (bicubic) and add the next octave's random grid, so each octave is a random grid of
    spacing ``cell`` px. The channels are mixed to RGB (luminance along ``luma_dir``) on the
    coarse grid, before the last 4x upsampling, which is linear and so commutes with the mix.
    """
    import cv2

    height, width = size
    levels = [i for i, cell in enumerate(_OCTAVE_CELLS) if cell <= max(size)]
    amps = np.stack([_LUMA_AMPS, _CHROMA_AMPS, _CHROMA_AMPS, _CHROMA_AMPS], 1).astype(np.float32)
    # Small textures skip the coarse octaves; scale the rest up to keep the overall contrast.
    amps *= np.sqrt(np.sum(amps ** 2, axis=0) / np.sum(amps[levels] ** 2, axis=0))
    coarsest = _OCTAVE_CELLS[levels[-1]]
    rows, cols = -(-height // coarsest) + 2, -(-width // coarsest) + 2
    grid = rng.standard_normal((rows, cols, 4), np.float32) * amps[levels[-1]]
    for level in reversed(levels[:-1]):
        grid = cv2.resize(grid, (cols * 2, rows * 2), interpolation=cv2.INTER_CUBIC)
        cell = _OCTAVE_CELLS[level]                 # keep only the cells that cover the image
        rows, cols = -(-height // cell) + 2, -(-width // cell) + 2
        grid = grid[:rows, :cols] + rng.standard_normal((rows, cols, 4), np.float32) * amps[level]
    mix = np.concatenate([luma_dir[None], np.eye(3, dtype=np.float32)])     # [4, 3]
    rgb = grid.reshape(-1, 4) @ mix + base
    finest = _OCTAVE_CELLS[levels[0]]
    up = cv2.resize(rgb.reshape(rows, cols, 3), (cols * finest, rows * finest),
                    interpolation=cv2.INTER_CUBIC)
    oy = int(rng.integers(0, up.shape[0] - height + 1))
    ox = int(rng.integers(0, up.shape[1] - width + 1))
    return np.ascontiguousarray(up[oy:oy + height, ox:ox + width])


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
    tex = _fractal_colour(rng, size, base, luma_dir)
    if rng.random() < 0.5:                                 # a grating, 10 to 24 px period
        angle, period, phase = rng.uniform(0, np.pi), rng.uniform(10, 24), rng.uniform(0, 6.3)
        k = 2 * np.pi / period
        ax = k * np.cos(angle) * np.arange(width, dtype=np.float32)
        ay = k * np.sin(angle) * np.arange(height, dtype=np.float32) + phase
        # sin(ax + ay) as a sum of two outer products: cheaper than a full-grid sin.
        wave = np.outer(np.cos(ay), np.sin(ax)) + np.outer(np.sin(ay), np.cos(ax))
        tex += wave[..., None] * rng.uniform(-0.07, 0.07, 3).astype(np.float32)
    # Soft spots that shift the colour of a region, keeping its texture (colour distractors).
    shift = np.zeros_like(tex)
    for _ in range(int(rng.integers(1, 5))):
        centre = (int(rng.integers(width)), int(rng.integers(height)))
        axes = tuple(int(a) for a in rng.integers(2, max(3, longest // 6), 2))
        colour = tuple(float(c) for c in rng.uniform(-0.45, 0.45, 3))
        cv2.ellipse(shift, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
    spot_edge_sigma = 2.0
    tex += cv2.GaussianBlur(shift, (0, 0), spot_edge_sigma)
    blur_sigma = 0.8                                       # keeps details resampling-friendly
    tex = cv2.GaussianBlur(tex, (0, 0), blur_sigma)
    # A smooth squash into (0.02, 0.98) instead of clipping: kinks would spoil bilinear resampling.
    return (0.5 + 0.48 * np.tanh((tex - 0.5) / 0.48)).astype(np.float32)


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


def _window(layer: Layer, m: np.ndarray, size: Size) -> tuple[slice, slice]:
    """Rows and columns of frame pixels that the layer can cover under layer-to-frame map ``m``."""
    height, width = size
    if layer.shape is None:
        return slice(0, height), slice(0, width)
    reach = layer.shape.radius * np.sqrt(np.sum(m[:2, :2] ** 2)) + 1.0   # Frobenius >= spectral
    x0, x1 = max(int(m[0, 2] - reach), 0), min(int(m[0, 2] + reach) + 2, width)
    y0, y1 = max(int(m[1, 2] - reach), 0), min(int(m[1, 2] + reach) + 2, height)
    return slice(y0, max(y0, y1)), slice(x0, max(x0, x1))


def _apply(m: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points ``(xs, ys)`` mapped by the 3x3 affine ``m``."""
    return m[0, 0] * xs + m[0, 1] * ys + m[0, 2], m[1, 0] * xs + m[1, 1] * ys + m[1, 2]


def _render_frame(spec: SceneSpec, inverses: list[np.ndarray], t: int, xs: np.ndarray,
                  ys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Colour ``[H, W, 3]`` float32 in [0, 1], layer index ``[H, W]`` int16, inverse depth."""
    height, width = spec.size
    image = np.zeros((height, width, 3), np.float32)
    index = np.zeros((height, width), np.int16)
    inv_depth = np.zeros((height, width), np.float64)
    for li, layer in enumerate(spec.layers):
        rows, cols = _window(layer, layer.motion[t], spec.size)
        if rows.start == rows.stop or cols.start == cols.stop:
            continue
        u, v = _apply(inverses[li][t], xs[rows, cols], ys[rows, cols])
        ox, oy = layer.texture_origin
        colour = sample_bilinear(layer.texture, u - ox, v - oy)
        a, b, c = layer.inverse_depth
        if layer.shape is None:
            image[rows, cols], index[rows, cols] = colour, li
            inv_depth[rows, cols] = a * u + b * v + c
            continue
        # Signed distance in frame pixels: layer units times the layer's scale at frame t.
        dist = layer.shape.sdf(u, v) * np.sqrt(abs(np.linalg.det(layer.motion[t, :2, :2])))
        alpha = np.clip(0.5 - dist, 0.0, 1.0).astype(np.float32)[..., None]
        region = image[rows, cols]
        region += alpha * (colour - region)
        hard = dist <= 0
        index[rows, cols][hard] = li
        inv_depth[rows, cols][hard] = c
    return image, index, inv_depth


def _flow_and_occlusion(spec: SceneSpec, inverses: list[np.ndarray], t: int, index: np.ndarray,
                        xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, ...]:
    """Exact forward flow ``[H, W, 2]`` float32, occlusion and out-of-frame ``[H, W]`` bool."""
    height, width = spec.size
    flow = np.zeros((height, width, 2), np.float64)
    occluded = np.zeros((height, width), bool)
    for li, layer in enumerate(spec.layers):
        sel = index == li
        if not sel.any():
            continue
        x, y = xs[sel], ys[sel]
        px, py = _apply(layer.motion[t + 1] @ inverses[li][t], x, y)
        flow[sel, 0], flow[sel, 1] = px - x, py - y
        covered = np.zeros(x.shape, bool)
        for lj in range(li + 1, len(spec.layers)):
            nearer = spec.layers[lj]
            rows, cols = _window(nearer, nearer.motion[t + 1], spec.size)
            near = ((px >= cols.start - 1) & (px <= cols.stop) & (py >= rows.start - 1)
                    & (py <= rows.stop))
            if near.any():
                u, v = _apply(inverses[lj][t + 1], px[near], py[near])
                covered[near] |= nearer.shape.sdf(u, v) <= 0
        occluded[sel] = covered
    half = 0.5  # pixel (i, j) covers [j - 0.5, j + 0.5) x [i - 0.5, i + 0.5)
    end_x, end_y = xs + flow[..., 0], ys + flow[..., 1]
    outside = (end_x < -half) | (end_x >= width - half) | (end_y < -half) | (end_y >= height - half)
    return flow.astype(np.float32), occluded | outside, outside


def render(spec: SceneSpec, rng: np.random.Generator | None = None) -> Scene:
    """Render a SceneSpec into frames and ground truth. ``rng`` draws the pixel noise, if any."""
    height, width = _check_size(spec.size)
    num_frames = spec.layers[0].motion.shape[0] if spec.layers else 0
    for i, layer in enumerate(spec.layers):
        if (layer.shape is None) != (i == 0) or layer.motion.shape != (num_frames, 3, 3):
            raise ConfigError(f"SceneSpec layer {i}: the background (and only it) must have no "
                              f"shape, and every motion must be [T, 3, 3]; got {layer.motion.shape}")
    if num_frames < 2:
        raise ConfigError(f"SceneSpec needs a background layer and T >= 2 frames, got {num_frames}")
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    inverses = [np.linalg.inv(layer.motion) for layer in spec.layers]
    images, indices, inv_depths = zip(*(_render_frame(spec, inverses, t, xs, ys)
                                        for t in range(num_frames)))
    flows, occlusions, outsides = zip(*(_flow_and_occlusion(spec, inverses, t, indices[t], xs, ys)
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
