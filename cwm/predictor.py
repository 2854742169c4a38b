"""The predictor: owns a model and its pre/post-processing, and speaks in the user's pixels.

>>> p = cwm.load("default")
>>> pred = p.predict(frame0, frame1, visible=0.05)          # predicted frame 1, same size as input
>>> cf = p.counterfactual(frame0, moves=[((40, 30), (6, 0))], static=[(5, 5)])
"""
from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Union

import numpy as np
import torch

from cwm.errors import ConfigError, InputError, shown
from cwm.frames import check_points, from_tensor, resize, scale_points, shift_image, to_tensor, to_tensor_pair
from cwm.masking import PREDICT_VISIBLE, last_frame_mask, make_mask, mask_from_visible, patch_at
from cwm.model import CWM

if TYPE_CHECKING:  # the probes import cwm; the predictor reaches them at call time
    from pathlib import Path

    from probes.depth import DepthResult
    from probes.keypoints import KeypointResult
    from probes.pair import PairState
    from probes.results import FlowResult, SegmentResult, TrackResult
    from probes.tracking import VideoTrackResult

#: What predict and counterfactual return: frames in the input's own kind (numpy uint8 or torch).
Frames = Union[np.ndarray, torch.Tensor]

Point = tuple[float, float]
Move = tuple[Point, Point]
#: Device types a predictor can run on, with the check that says whether one is usable here.
_DEVICE_TYPES = {"cpu": lambda: True, "cuda": lambda: torch.cuda.is_available(),
                 "mps": lambda: torch.backends.mps.is_available()}


def resolve_device(device: str | torch.device | None, name: str = "device") -> torch.device:
    """The ``torch.device`` a predictor runs on: ``device``, or CUDA when available if None.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``, a ``torch.device``, or None.
        name: how error messages name the argument (the CLI passes ``"--device"``).
    Raises:
        ConfigError: a string torch does not parse as a device, an unsupported device type, or
            a device that is not available here (no CUDA, a CUDA index past the last GPU).
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    text = shown(str(device))
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(f"{name} {text} is not a device (use cpu, cuda, cuda:N or mps)") from None
    if dev.type not in _DEVICE_TYPES:
        raise ConfigError(f"{name} {text}: device type '{dev.type}' is not supported (use {', '.join(_DEVICE_TYPES)})")
    if not _DEVICE_TYPES[dev.type]():
        raise ConfigError(f"{name} {text}: {dev.type.upper()} is not available here (see `cwm env`)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"{name} {text}: there are only {torch.cuda.device_count()} CUDA devices")
    return dev


class CWMPredictor:
    """A CWM plus preprocessing. Inputs and outputs are in the user's pixels (docs/design.md §2).

    Attributes:
        model: the ``nn.Module``; ``model(x, mask)`` has the official forward's semantics.
        config: its :class:`cwm.config.CWMConfig`.
        device: where the model runs.
        size: ``(H, W)`` the frames are resized to before the model sees them.
        patch_size, grid, num_frames: the model's patch side, patch grid ``(h, w)`` at ``size``,
            and clip length. Together with :meth:`predict_fn` these are all the probes use, so any
            object with the same attributes (an analytic oracle, say) can stand in for a predictor.
    """

    def __init__(self, model: CWM, device: str | torch.device | None = None):
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.config = model.cfg
        self.size = self.config.input_size
        self.patch_size = self.config.patch_size
        self.num_frames = self.config.num_frames
        self.grid = (self.size[0] // self.patch_size, self.size[1] // self.patch_size)

    def __repr__(self) -> str:
        c = self.config
        return (f"CWMPredictor(size={self.size}, patch={c.patch_size}, frames={c.num_frames}, "
                f"encoder={c.enc_dim}x{c.enc_depth}, decoder={c.dec_dim}x{c.dec_depth}, device={self.device})")

    # ------------------------------------------------------------------ the model as a function
    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on GPUs that support it; a no-op elsewhere (CPU runs float32)."""
        if self.device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def predict_fn(self, video: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The predicted last frame at model resolution, differentiable in ``video``.

        Args:
            video: ``[B, 3, T, H, W]`` RGB in [0, 1] at :attr:`size`, on :attr:`device`.
            mask: ``[B, T*h*w]`` True = masked, only in the last frame.
        Returns:
            ``[B, 3, H, W]`` float32 (see :meth:`cwm.model.CWM.predict_frame`). This is the function
            the probes differentiate.
        """
        return self.model.predict_frame(video, mask.to(video.device)).float()

    def _clip(self, frame0: torch.Tensor, frame1: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` pair at user size -> ``[B, 3, T, h, w]`` at model size (frame 0 repeated
        for models with more than two frames, as the official code does for static context)."""
        f0, f1 = resize(frame0, self.size), resize(frame1, self.size)
        frames = [f0] * (self.config.num_frames - 1) + [f1]
        return torch.stack(frames, dim=2).to(self.device)

    def _mask(self, batch: int, mask, visible: float, seed: int) -> torch.Tensor:
        t = self.config.num_frames
        if mask is None:
            if not 0.0 < visible <= 1.0:
                raise InputError(f"visible must be in (0, 1] (got {visible})")
            return make_mask(batch, t, self.grid, 1.0 - min(visible, 1.0 - 1e-9), seed=seed)
        mask = torch.as_tensor(mask, dtype=torch.bool)
        n = self.grid[0] * self.grid[1]
        if mask.ndim == 1:
            mask = mask[None].expand(batch, -1)
        if mask.shape[-1] == n:
            mask = last_frame_mask(mask, t)
        if mask.shape != (batch, t * n):
            raise InputError(f"mask must be [B, {t * n}] or [B, {n}] (last frame only); got {tuple(mask.shape)}")
        return mask

    # ------------------------------------------------------------------ public API
    @torch.no_grad()
    def predict(self, frame0, frame1, mask=None, visible: float = PREDICT_VISIBLE, seed: int = 0) -> Frames:
        """Predict frame 1 from frame 0 and a few revealed patches of frame 1.

        Args:
            frame0, frame1: images (see :mod:`cwm.frames`), same size.
            mask: optional bool mask, ``[T*h*w]``/``[B, T*h*w]`` or last-frame ``[h*w]``/``[B, h*w]``
                at the model's patch grid (:attr:`grid`), True = masked. Overrides ``visible``.
            visible: fraction of frame-1 patches revealed (at least one), chosen at random by ``seed``.
        Returns:
            The predicted frame 1 at the input's size, in the input's kind.
        """
        f0, f1, batch = to_tensor_pair(frame0, frame1)
        m = self._mask(f0.shape[0], mask, visible, seed)
        with self.autocast():
            pred = self.predict_fn(self._clip(f0, f1), m)
        return from_tensor(resize(pred.float().cpu(), batch.size), batch)

    @torch.no_grad()
    def counterfactual(self, frame0, moves: Sequence[Move] = (), static: Sequence[Point] = ()) -> Frames:
        """The motion counterfactual: move patches of frame 0, hold others, predict frame 1.

        Each move ``((x, y), (dx, dy))`` reveals, in frame 1, the patch that contains ``(x+dx, y+dy)``
        filled with frame 0 translated by ``(dx, dy)``; each static point ``(x, y)`` reveals its
        patch unchanged. Everything else is predicted. Points and displacements are in the input's
        pixels; the same moves apply to every image of a batch.

        Returns:
            The predicted frame 1 at the input's size, in the input's kind.
        """
        f0, batch = to_tensor(frame0, "frame0")
        frame1, visible = self.counterfactual_inputs(f0, moves, static, batch.size)
        m = make_mask_from_patches(f0.shape[0], visible, self.config.num_frames, self.grid)
        with self.autocast():
            pred = self.predict_fn(self._clip(f0, frame1), m)
        return from_tensor(resize(pred.float().cpu(), batch.size), batch)

    def flow(self, frame0, frame1, **options) -> FlowResult | list[FlowResult]:
        """Dense optical flow and occlusion by Jacobian counterfactuals -> ``FlowResult``
        (a list for batches); options and defaults are those of :func:`probes.flow.flow`."""
        from probes.flow import flow

        return flow(self, frame0, frame1, **options)

    def track(self, frame0, frame1, points=None, **options) -> TrackResult | list[TrackResult] | VideoTrackResult:
        """Two frames: ``track(frame0, frame1, points)`` -> ``TrackResult``, where ``points``
        ``[(x, y), ...]`` of frame 0 are in frame 1 (see :func:`probes.flow.track`).

        A video: ``track(frames, queries, mode="chained")`` (no ``points``) is
        :meth:`track_video`.
        """
        if points is None:
            if getattr(frame0, "ndim", 0) == 3 and getattr(frame1, "ndim", 0) == 3:
                raise InputError("track(frame0, frame1, points): two frames need the points to track; "
                                 "a video takes track(frames, queries) with rows (t, x, y)")
            return self.track_video(frame0, frame1, **options)
        from probes.flow import track

        return track(self, frame0, frame1, points, **options)

    def track_video(self, frames, queries, mode: str = "chained", gap: int = 5,
                    backward: bool = True, redetect: int = 4, progress=None, **options) -> VideoTrackResult:
        """Track points through a whole video -> ``VideoTrackResult`` (``.tracks [N, T, 2]``
        ``(x, y)`` and ``.occluded [N, T]`` bool, in the video's pixels).

        Args:
            frames: a video path, a folder of frames, a uint8 array ``[T, H, W, 3]`` or a list of
                frames; read one at a time (memory flat in the video's length).
            queries: ``[N, 3]`` rows ``(t, x, y)``: a frame index and a point in that frame.
            mode: ``"direct"`` (each frame from the query frame), ``"chained"`` (frame to frame)
                or ``"cfg"`` (a constant ``gap`` of frames, chained); see :mod:`probes.tracking`.
            backward: also track into frames before each query frame.
            redetect: chained/cfg: look for lost points again every this many frames.
            **options: probe options of :func:`probes.flow.track` for each frame pair.
        """
        from probes.tracking import probe_pair_tracker, track_video

        return track_video(probe_pair_tracker(self, **options), frames, queries, mode=mode, gap=gap,
                           backward=backward, redetect=redetect, progress=progress)

    def segment(self, image, points=None, **kw) -> SegmentResult:
        """Spelke segments of one image -> ``SegmentResult`` (``.masks [N, H, W]`` bool): one per
        ``(x, y)`` point, or all objects when ``points`` is None; see :func:`probes.segments.segment`."""
        from probes.segments import segment

        return segment(self, image, points, **kw)

    def set_pair(self, frame0, frame1, **flow_options) -> PairState:
        """One pair's probe state: ``state.flow()``, ``state.occlusion()`` and ``state.depth()``
        share one flow probe, run at the first read; ``state.segment(points)`` keeps each poke's
        map and ``state.track(points)`` each query, so asking again costs only new work (see
        :mod:`probes.pair`)."""
        from probes.pair import PairState

        return PairState(self, frame0, frame1, **flow_options)

    def depth(self, frame0, frame1, stereo: bool = False, **kw) -> DepthResult:
        """Relative inverse depth from parallax -> ``DepthResult`` (``.inverse_depth [H, W]``,
        larger = nearer); see :func:`probes.depth.depth`."""
        from probes.depth import depth

        return depth(self, frame0, frame1, stereo=stereo, **kw)

    def keypoints(self, frame0, frame1, n: int = 8, chunk_size: int = 64) -> KeypointResult:
        """The ``n`` frame-1 patches that most reduce the prediction error, chosen greedily ->
        ``KeypointResult``: ``.points [n, 2]`` ``(x, y)`` patch centres in input pixels,
        ``.patch_indices [n]``, ``.errors [n + 1]`` and ``.reconstructions [n + 1, H, W, 3]``
        uint8 (predicted frame 1 after each step); see :func:`probes.keypoints.keypoints`.

        Args:
            frame0, frame1: one pair of images (numpy uint8 ``[H, W, 3]`` or torch ``[3, H, W]``).
            n: number of keypoints, 1 <= n <= the model's patch count.
            chunk_size: candidates scored per batched forward pass.
        """
        from probes.keypoints import keypoints

        return keypoints(self, frame0, frame1, n=n, chunk_size=chunk_size)

    def save_pretrained(self, folder, training: dict | None = None, overwrite: bool = False,
                        repo_id: str | None = None) -> "Path":
        """Write the weights folder that ``cwm.load(folder)`` reads, ready for the hub.

        ``folder/model.safetensors``, ``folder/config.json`` (:func:`cwm.checkpoints.save_pretrained`)
        and a short ``folder/README.md`` model card; push it with the hub's tools and load it
        with ``cwm.load("org/name")``. Each file is written atomically.

        Args:
            folder: the folder (created if missing).
            training: training metadata for ``config.json`` and the card (e.g. ``{"step": 1000}``).
            overwrite: replace those files if the folder already has them.
            repo_id: the hub id it will be pushed to (``org/name``), for the card's example.
        Returns:
            the folder, as a ``Path``.
        Raises:
            OutputExistsError: the folder already holds one of the three files and ``overwrite``
                is False (an ``InputError``).
            InputError: it cannot be written.
        """
        from pathlib import Path

        from cwm import hf
        from cwm.atomic import atomic_write
        from cwm.checkpoints import save_pretrained
        from cwm.errors import OutputExistsError

        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise InputError(f"cannot write weights to '{folder}': it is a file, not a folder")
        for name in (hf.WEIGHTS_FILE, hf.CONFIG_FILE, hf.CARD_FILE):
            if (folder / name).exists() and not overwrite:
                raise OutputExistsError(f"cannot write '{folder / name}': file exists; pass overwrite=True "
                                        "to replace it", folder / name)
        save_pretrained(self.model, folder, training=training)
        with atomic_write(folder / hf.CARD_FILE, overwrite=True) as tmp:
            tmp.write_text(hf.model_card(self.config, training, name=folder.resolve().name, repo_id=repo_id),
                           encoding="utf-8")
        return folder

    def counterfactual_inputs(self, f0: torch.Tensor, moves: Sequence[Move], static: Sequence[Point],
                              size: tuple[int, int]) -> tuple[torch.Tensor, list[int]]:
        """Frame 1 (at user size) and the visible patch indices for :meth:`counterfactual`."""
        h, w = size
        frame1 = f0.clone()
        visible: list[int] = []
        for (x, y) in check_points(static, size, "static").tolist():
            visible.append(self._patch_index((x, y), size))
        for i, move in enumerate(moves):
            try:
                (x, y), (dx, dy) = move
            except (TypeError, ValueError):
                raise InputError(f"move {i}: expected ((x, y), (dx, dy)) (got {move!r})") from None
            check_points([(x, y)], size, f"move {i} source")
            tx, ty = check_points([(x + dx, y + dy)], size, f"move {i} target")[0]
            shifted = shift_image(f0, torch.tensor([[dx, dy]], dtype=f0.dtype).expand(f0.shape[0], -1))
            idx = self._patch_index((tx, ty), size)
            # Paint the target patch's footprint (in user pixels) with frame 0 translated by (dx, dy).
            y0, y1, x0, x1 = self._patch_box(idx, size)
            frame1[..., y0:y1, x0:x1] = shifted[..., y0:y1, x0:x1]
            visible.append(idx)
        return frame1, sorted(set(visible))

    def _patch_index(self, point: Point, size: tuple[int, int]) -> int:
        (mx, my), = scale_points([point], size, self.size)
        return patch_at(mx, my, self.patch_size, self.grid)

    def _patch_box(self, idx: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
        """Pixel box ``(y0, y1, x0, x1)`` in user pixels covering model patch ``idx``."""
        gh, gw = self.grid
        i, j = divmod(idx, gw)
        h, w = size
        return (int(np.floor(i * h / gh)), int(np.ceil((i + 1) * h / gh)),
                int(np.floor(j * w / gw)), int(np.ceil((j + 1) * w / gw)))


def make_mask_from_patches(batch: int, visible: Sequence[int], num_frames: int, grid: tuple[int, int]) -> torch.Tensor:
    """``[B, T*h*w]`` mask (True = masked) revealing the given last-frame patches in every sample."""
    return mask_from_visible([list(visible)] * batch, num_frames, grid)
