"""Scenes made of real photos, with exact ground truth (FlyingChairs-style).

A random crop of a real photo is the background; the camera moves it by a small random
similarity (translation, roll, zoom) per frame, or holds still. Crops of other photos, cut out
by the random shapes of :mod:`cwm.synthetic.shapes`, are pasted on top and move on their own.
The layers and motions are an ordinary :class:`~cwm.synthetic.scene.SceneSpec`, rendered by
:func:`cwm.synthetic.render.render`, so flow, occlusion, instances and depth are exact exactly
as for the procedural scenes; only the textures are real, which is what a model trained here
needs to see real footage (DESIGN notes: the same steps on procedural scenes alone made every
real-footage measure worse).

Crops are taken at a random scale, from 1 photo pixel per output pixel up to the whole photo, so
a model trained on them sees the image statistics of every zoom level it is later run at.

    bank = PhotoBank.from_folders(["/usr/share/doc/opencv-doc/examples/data"],
                                  exclude=HELD_OUT_PATTERNS)
    scene = make_photo_scene(bank, seed=3, size=(64, 64))       # a Scene, 2 frames
    scene.frames, scene.flow[0], scene.occlusion[0], scene.instances[0]
"""
from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from cwm.errors import ConfigError, InputError
from cwm.synthetic.config import Size, check_size
from cwm.synthetic.render import render
from cwm.synthetic.sampling import about_point, similarity
from cwm.synthetic.scene import Layer, Scene, SceneSpec
from cwm.synthetic.shapes import random_shape

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".webp", ".tif", ".tiff")
#: Material this project evaluates on, never trained on (benchmarks/real.py): the Aloe stereo
#: pair, the Middlebury RubberWhale and Basketball pairs, and frames of the scored clips.
HELD_OUT_PATTERNS = ("aloe*", "rubberwhale*", "basketball*", "vtest*", "tree*")


@dataclass(frozen=True)
class PhotoSceneConfig:
    """Ranges the photo scenes are drawn from; lengths are fractions of the smaller side per frame.

    Attributes:
        camera_speed: largest background translation per frame, per axis.
        camera_rotation, camera_zoom: largest roll (degrees) and zoom (fraction) per frame.
        static_camera_prob: probability that the background does not move at all.
        still_prob: probability that nothing moves (identical frames apart from noise).
        num_objects: inclusive range of pasted objects.
        object_radius: range of object radii.
        object_speed, object_rotation, object_scaling: largest object motion per frame.
        scale: range of the log2 zoom of the crop (0: one photo pixel per output pixel); the
            upper end is clipped to what the photo holds.
        noise: range of the standard deviation of Gaussian pixel noise (0..1 units).
    """

    camera_speed: float = 0.09
    camera_rotation: float = 3.0
    camera_zoom: float = 0.04
    static_camera_prob: float = 0.15
    still_prob: float = 0.05
    num_objects: tuple[int, int] = (0, 3)
    object_radius: tuple[float, float] = (0.12, 0.3)
    object_speed: float = 0.1
    object_rotation: float = 10.0
    object_scaling: float = 0.06
    scale: tuple[float, float] = (0.0, 6.0)
    noise: tuple[float, float] = (0.0, 0.01)


class PhotoBank:
    """Photos held in memory as uint8 ``[h, w, 3]`` RGB, the longer side at most ``max_side``.

    Args:
        images: the photos.
        names: where each came from (for the record of what was trained on).
    """

    def __init__(self, images: Sequence[np.ndarray], names: Sequence[str]):
        if not images:
            raise InputError("the photo bank is empty: no images found")
        self.images, self.names = list(images), list(names)

    def __len__(self) -> int:
        return len(self.images)

    @classmethod
    def from_folders(cls, folders: Sequence[str | os.PathLike], exclude: Sequence[str] = HELD_OUT_PATTERNS,
                     max_side: int = 1024, min_side: int = 96) -> PhotoBank:
        """Every image under ``folders`` (recursive, sorted) whose file name matches no pattern
        in ``exclude`` (case-insensitive globs) and whose smaller side is at least ``min_side``.

        Raises:
            InputError: a folder does not exist, or no usable image was found.
        """
        from cwm.io import read_image

        paths = []
        for folder in folders:
            root = Path(folder)
            if not root.is_dir():
                raise InputError(f"photo folder '{folder}' does not exist or is not a folder")
            paths += sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        images, names = [], []
        for p in paths:
            if any(fnmatch.fnmatch(p.name.lower(), pat.lower()) for pat in exclude):
                continue
            try:
                image = read_image(p, max_side=max_side)
            except Exception:  # noqa: BLE001 - an unreadable file is simply not part of the bank
                continue
            if min(image.shape[:2]) >= min_side:
                images.append(image)
                names.append(str(p))
        if not images:
            raise InputError(f"no usable images (smaller side >= {min_side} px) under {', '.join(map(str, folders))}")
        return cls(images, names)

    def texture(self, rng: np.random.Generator, size: Size, zoom: float) -> np.ndarray:
        """A random crop of a random photo, ``size = (h, w)`` output pixels at ``2**zoom`` photo
        pixels each (clipped to what the photo holds), area-resampled, randomly flipped, with a
        small colour jitter: float32 ``[h, w, 3]`` in [0, 1]."""
        import cv2

        image = self.images[int(rng.integers(len(self.images)))]
        h, w = size
        ih, iw = image.shape[:2]
        scale = min(2.0 ** zoom, ih / h, iw / w)
        scale = max(scale, min(1.0, ih / h, iw / w))  # a photo smaller than the crop is upsampled
        ch, cw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
        ch, cw = min(ch, ih), min(cw, iw)
        top, left = int(rng.integers(0, ih - ch + 1)), int(rng.integers(0, iw - cw + 1))
        crop = image[top:top + ch, left:left + cw]
        interp = cv2.INTER_AREA if ch >= h else cv2.INTER_CUBIC
        tex = cv2.resize(crop, (w, h), interpolation=interp).astype(np.float32) / 255.0
        if rng.random() < 0.5:
            tex = tex[:, ::-1]
        gain = rng.uniform(0.8, 1.2) * rng.uniform(0.93, 1.07, 3)
        tex = (tex - 0.5) * rng.uniform(0.8, 1.2) + 0.5 + rng.uniform(-0.08, 0.08)
        return np.clip(tex * gain.astype(np.float32), 0.0, 1.0).astype(np.float32)


def _background(rng: np.random.Generator, bank: PhotoBank, cfg: PhotoSceneConfig, size: Size,
                num_frames: int, zoom: float, still: bool) -> Layer:
    height, width = size
    side = min(size)
    center = np.array([(width - 1) / 2, (height - 1) / 2])
    if still or rng.random() < cfg.static_camera_prob:
        step = np.eye(3)
    else:
        shift = rng.uniform(-1, 1, 2) * cfg.camera_speed * side
        roll = np.deg2rad(rng.uniform(-1, 1) * cfg.camera_rotation)
        grow = 1.0 + rng.uniform(-1, 1) * cfg.camera_zoom
        step = about_point(center, similarity(roll, grow, *shift))
    motion = np.stack([np.linalg.matrix_power(step, t) for t in range(num_frames)])
    corners = np.array([[-1, -1, 1], [width, -1, 1], [-1, height, 1], [width, height, 1]], float)
    seen = np.concatenate([(np.linalg.inv(m) @ corners.T)[:2].T for m in motion])
    low, high = np.floor(seen.min(axis=0)) - 2, np.ceil(seen.max(axis=0)) + 2
    tex_w, tex_h = (high - low + 1).astype(int)
    texture = bank.texture(rng, (int(tex_h), int(tex_w)), zoom)
    inv_depth = 1.0 / rng.uniform(8.0, 12.0)
    return Layer(0, texture, (float(low[0]), float(low[1])), motion, (0.0, 0.0, inv_depth))


def _objects(rng: np.random.Generator, bank: PhotoBank, cfg: PhotoSceneConfig, size: Size,
             num_frames: int, camera: np.ndarray, zoom: float, still: bool) -> list[Layer]:
    height, width = size
    side = min(size)
    layers = []
    for k in range(int(rng.integers(cfg.num_objects[0], cfg.num_objects[1] + 1))):
        radius = rng.uniform(*cfg.object_radius) * side
        shape = random_shape(rng, radius)
        edge = int(np.ceil(shape.radius)) + 2
        texture = bank.texture(rng, (2 * edge + 1, 2 * edge + 1), zoom + rng.uniform(-1.0, 1.0))
        start = rng.uniform([0.1 * width, 0.1 * height], [0.9 * width, 0.9 * height])
        if still:
            velocity, spin, grow = np.zeros(2), 0.0, 1.0
        else:
            velocity = rng.uniform(-1, 1, 2) * cfg.object_speed * side
            spin = np.deg2rad(rng.uniform(-1, 1) * cfg.object_rotation)
            grow = 1.0 + rng.uniform(-1, 1) * cfg.object_scaling
        angle0 = rng.uniform(0, 2 * np.pi)
        inv_depth = 1.0 / rng.uniform(2.0, 7.0)
        motion = np.stack([camera[t] @ similarity(angle0 + t * spin, grow ** t, *(start + t * velocity))
                           for t in range(num_frames)])
        layers.append(Layer(k + 1, texture, (-edge, -edge), motion, (0.0, 0.0, inv_depth), shape))
    return sorted(layers, key=lambda layer: layer.inverse_depth[2])  # painter's order


def make_photo_scene(bank: PhotoBank, seed: int, size: Size = (64, 64), num_frames: int = 2,
                     config: PhotoSceneConfig | None = None) -> Scene:
    """A scene of real-photo layers with exact ground truth, deterministic in ``(bank, seed)``.

    Args:
        bank: the photos to draw textures from.
        seed: int >= 0.
        size: ``(H, W)`` output pixels, each >= 8.
        num_frames: T >= 2 (motions are constant per frame, so a longer clip keeps moving).
        config: the ranges to draw from (default :class:`PhotoSceneConfig`).
    Returns:
        A :class:`~cwm.synthetic.scene.Scene` (frames ``[T, H, W, 3]`` uint8 RGB, flow ``[T-1,
        H, W, 2]`` ``(dx, dy)``, occlusion, out_of_frame, instances, depth); ``scene.config``
        is None and ``scene.seed`` is ``seed``.
    """
    cfg = config or PhotoSceneConfig()
    height, width = check_size(size)
    if int(num_frames) < 2 or int(seed) < 0:
        raise ConfigError(f"num_frames must be >= 2 and seed >= 0, got {num_frames} and {seed}")
    rng = np.random.default_rng(int(seed))
    zoom = rng.uniform(*cfg.scale)
    still = rng.random() < cfg.still_prob
    background = _background(rng, bank, cfg, (height, width), int(num_frames), zoom, still)
    objects = _objects(rng, bank, cfg, (height, width), int(num_frames), background.motion, zoom, still)
    spec = SceneSpec((height, width), (background, *objects), noise=float(rng.uniform(*cfg.noise)))
    scene = render(spec, rng)
    scene.seed = int(seed)
    return scene
