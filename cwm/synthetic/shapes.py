"""Object shapes as signed distance functions in layer units (negative inside)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
