"""Point tracking over a whole video, from any two-frame tracker (docs/design.md §4).

A *pair tracker* answers one question: where are these points of frame ``a`` in frame ``b``, and
are they visible there? ``pair(frame_a, frame_b, points [N, 2]) -> (points_b [N, 2], visible [N])``,
frames uint8 ``[H, W, 3]``, points ``(x, y)`` pixels (centres at integers). The CWM's is
:func:`probes.flow.track` (:func:`probe_pair_tracker`); :mod:`probes.pair_trackers` has the
zero-motion and dense-flow (DIS) ones. :func:`track_video` composes pair answers along a video in
one of three modes:

- ``direct``: every target frame straight from the query frame, as two-frame tracking (as
  Opt-CWM evaluates). No drift, but large motions must stay within the pair tracker's reach.
- ``chained``: frame to frame, ``t -> t+1``, each step from the previous position.
- ``cfg``: a constant frame gap ``g`` (default 5): anchors every ``g`` frames are chained,
  frames in between are read directly from the last anchor (``g = 1`` is ``chained``).

Occlusion in ``chained`` and ``cfg``: a point found occluded at an anchor frame loses its anchor
(its position there is a guess). From then on it stays occluded and moves with its neighbourhood:
the median displacement, over each step, of the :data:`NEIGHBOURS` nearest points still tracked
(it stays put when there are none). Every ``redetect`` frames (counted from its query frame; 1:
every frame) the pair tracker also looks for it directly from its query frame and query point;
if it is seen, it is visible there and that becomes its new anchor. In ``direct`` mode every frame
is independent.

Queries may sit at any frame; frames after it are tracked forwards and (``backward=True``) frames
before it backwards, by the same rules in reverse time. Frames are read one at a time from a
:class:`cwm.framesource.FrameSource` that caches a window of ``g + 2`` frames, so memory is flat in
the video's length (the output, ``N x T`` positions, aside).
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cwm.atomic import atomic_write
from cwm.errors import ConfigError, InputError
from cwm.frames import check_queries  # noqa: F401  (validated here, public there)
from cwm.framesource import FrameSource, open_frames
from cwm.viz import distinct_colors
from probes.flow import track
from probes.results import ArrayResult

MODES = ("direct", "chained", "cfg")
DEFAULT_GAP = 5
#: Tracked points whose median step moves an occluded, not re-detected point.
NEIGHBOURS = 8
#: Frames between attempts to re-detect a lost point from its query (each costs a pair call per
#: query frame among the lost points).
DEFAULT_REDETECT = 4
PairTracker = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class VideoTrackResult(ArrayResult):
    """Tracks of query points through a video, in the video's pixels.

    Attributes:
        queries: ``[N, 3]`` float32 ``(t, x, y)``: query frame and point.
        tracks: ``[N, T, 2]`` float32 ``(x, y)`` in every frame (at the query frame, the query).
        occluded: ``[N, T]`` bool, True where the point is not visible.
        mode: ``"direct"``, ``"chained"`` or ``"cfg"``; gap: the frame gap (``cfg``).
    """

    MAIN = "tracks"
    queries: np.ndarray
    tracks: np.ndarray
    occluded: np.ndarray
    mode: str
    gap: int = 1

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> None:
        """Write ``queries``, ``tracks``, ``occluded`` (and ``mode``) to an ``.npz``, atomically."""
        path = Path(path)
        if path.suffix.lower() != ".npz":
            raise InputError(f"{path}: tracks are saved as .npz")
        with atomic_write(path, overwrite=overwrite) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, mode=np.array(self.mode), gap=np.array(self.gap), **self.arrays())

    def draw(self, frame: np.ndarray, t: int, trail: int = 8) -> np.ndarray:
        """Frame ``t`` (uint8 ``[H, W, 3]``) with each point's last ``trail`` positions as a line
        and a dot where it is visible (one colour per track; occluded points are not drawn)."""
        import cv2

        out = np.ascontiguousarray(frame).copy()
        colors = distinct_colors(len(self.tracks))
        start = max(0, t - trail)
        for i, (path, hidden) in enumerate(zip(self.tracks[:, start:t + 1], self.occluded[:, start:t + 1])):
            color = tuple(int(c) for c in colors[i])
            seen = path[~hidden]
            if len(seen) > 1:
                cv2.polylines(out, [np.rint(seen).astype(np.int32)], False, color, 1, cv2.LINE_AA)
            if not hidden[-1]:
                x, y = (int(round(v)) for v in path[-1])
                cv2.circle(out, (x, y), 3, (0, 0, 0), -1, cv2.LINE_AA)
                cv2.circle(out, (x, y), 2, color, -1, cv2.LINE_AA)
        return out


def _neighbour_steps(start: np.ndarray, ref_start: np.ndarray, ref_step: np.ndarray) -> np.ndarray:
    """Median step ``[M, 2]`` of the nearest reference points (``ref_start [R, 2]`` moved by
    ``ref_step``) to each of ``start [M, 2]``; zero when there is no reference point."""
    if not len(ref_start):
        return np.zeros_like(start)
    dist = np.sum((start[:, None] - ref_start[None]) ** 2, axis=-1)        # (M, R)
    k = min(NEIGHBOURS, len(ref_start))
    nearest = np.argpartition(dist, k - 1, axis=1)[:, :k]
    return np.median(ref_step[nearest], axis=1)


def _sweep(pair: PairTracker, frames, order: list[int], tq: np.ndarray, qxy: np.ndarray,
           gap: int | None, redetect: int, tracks: np.ndarray, occluded: np.ndarray,
           progress: Callable[[], None] | None) -> None:
    """Visit ``order`` (ascending: forwards; descending: backwards), filling ``tracks`` and
    ``occluded`` of every query met before; ``gap`` None is direct mode."""
    n = len(tq)
    started = np.zeros(n, bool)
    anchor_t = tq.copy()
    anchor_xy = qxy.copy()
    reliable = np.ones(n, bool)       # the anchor position is a seen point, not a guess
    pos = qxy.copy()                  # position at the previously visited frame

    def ask(a: int, t: int, idx: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        moved, visible = pair(frames[a], frames[t], points)
        return np.asarray(moved, np.float64).reshape(len(idx), 2), np.asarray(visible, bool).reshape(len(idx))

    for t in order:
        active = started & (tq != t)
        started |= tq == t
        if active.any():
            new, vis = pos.copy(), np.zeros(n, bool)
            tracked = active & reliable
            for a in np.unique(anchor_t[tracked]):
                idx = np.flatnonzero(tracked & (anchor_t == a))
                new[idx], vis[idx] = ask(int(a), t, idx, anchor_xy[idx])
            lost = np.flatnonzero(active & ~reliable)
            if len(lost):
                found = np.zeros(n, bool)
                due = lost[np.abs(t - tq[lost]) % redetect == 0]
                for a in np.unique(tq[due]):           # re-detect from the query itself
                    idx = due[tq[due] == a]
                    moved, seen = ask(int(a), t, idx, qxy[idx])
                    new[idx[seen]], found[idx[seen]] = moved[seen], True
                ref = np.flatnonzero(tracked & vis)
                still = lost[~found[lost]]
                new[still] = pos[still] + _neighbour_steps(pos[still], pos[ref], new[ref] - pos[ref])
                vis[found] = True
                anchor_t[found], anchor_xy[found], reliable[found] = t, new[found], True
            if gap is not None:               # a new anchor every `gap` frames
                due = np.flatnonzero(tracked & (np.abs(t - anchor_t) >= gap))
                anchor_t[due], anchor_xy[due], reliable[due] = t, new[due], vis[due]
            tracks[active, t], occluded[active, t] = new[active], ~vis[active]
            pos[active] = new[active]
        if progress is not None:
            progress()


def track_video(pair: PairTracker, frames, queries, mode: str = "chained", gap: int = DEFAULT_GAP,
                backward: bool = True, redetect: int = DEFAULT_REDETECT,
                progress: Callable[[], None] | None = None) -> VideoTrackResult:
    """Track query points through a video with a pair tracker (see the module docstring).

    Args:
        pair: ``(frame_a, frame_b, points [N, 2]) -> (points_b [N, 2], visible [N])``.
        frames: a video path, a folder of frames, a uint8 array ``[T, H, W, 3]``, a list of
            frames or a :class:`cwm.framesource.FrameSource`.
        queries: ``[N, 3]`` rows ``(t, x, y)``: frame index and point in that frame (pixels).
        mode: ``"direct"``, ``"chained"`` or ``"cfg"``; ``gap``: the frame gap of ``cfg``.
        backward: also track into the frames before each query frame (else those frames report
            the query point, occluded: the TAP-Vid "first" convention).
        redetect: ``chained``/``cfg``: try to re-detect lost points every this many frames.
        progress: called once per frame visited (``T`` or ``2T`` calls).
    Returns:
        :class:`VideoTrackResult` with ``tracks [N, T, 2]`` and ``occluded [N, T]``.
    """
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)} (got {mode!r})")
    if mode == "cfg" and (int(gap) != gap or gap < 1):
        raise ConfigError(f"gap must be an integer >= 1 (got {gap!r})")
    if int(redetect) != redetect or redetect < 1:
        raise ConfigError(f"redetect must be an integer >= 1 (got {redetect!r})")
    step = {"direct": None, "chained": 1, "cfg": int(gap)}[mode]
    owned = not isinstance(frames, FrameSource)
    source = open_frames(frames, window=(step or 1) + 2)
    try:
        count = len(source)
        q = check_queries(queries, count, source.size)
        tq, qxy = q[:, 0].astype(np.int64), q[:, 1:].copy()
        n = len(q)
        tracks = np.repeat(qxy[:, None], count, axis=1)
        occluded = np.ones((n, count), bool)
        occluded[np.arange(n), tq] = False
        for order in ([range(count)] + ([range(count - 1, -1, -1)] if backward else [])):
            _sweep(pair, source, list(order), tq, qxy, step, int(redetect), tracks, occluded, progress)
    finally:
        if owned:
            source.close()
    return VideoTrackResult(q.astype(np.float32), tracks.astype(np.float32), occluded, mode,
                            step or 0)


def probe_pair_tracker(predictor, **options) -> PairTracker:
    """The CWM's pair tracker: :func:`probes.flow.track` with ``options``. Points are clamped to
    the pixel centres' range ``[0, W-1] x [0, H-1]`` first (the probe's domain)."""
    def pair(frame_a: np.ndarray, frame_b: np.ndarray, points: np.ndarray):
        h, w = frame_a.shape[:2]
        pts = np.clip(np.asarray(points, np.float64), 0, [w - 1, h - 1])
        result = track(predictor, frame_a, frame_b, pts, **options)
        return result.tracks.astype(np.float64), result.visible

    return pair
