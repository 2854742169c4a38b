"""The TAP-Vid point-tracking protocol, exact: metrics and query sampling (numpy only).

Written from the TAP-Vid paper and its evaluation (google-deepmind/tapnet,
``tapnet/tapvid/evaluation_datasets.py``: ``compute_tapvid_metrics``, ``sample_queries_first``,
``sample_queries_strided``); ``tests/test_tapvid_metrics.py`` checks every function here against
golden outputs of that code to 1e-12 (``tests/fixtures/tapvid/``).

**Coordinate order.** These functions keep the official layouts, so that arrays can be passed
between them and the official code unchanged:

- ``query_points [b, n, 3]`` are ``(t, y, x)`` -- row before column, the official order;
- ``*_tracks [b, n, t, 2]`` and ``target_points`` are ``(x, y)``;
- ``*_occluded [b, n, t]`` bool, True = occluded.

The rest of cwm's public API (``predictor.track``, ``cwm track``) takes queries as ``(t, x, y)``;
:func:`queries_txy` converts. Pixel coordinates here are the protocol's raster coordinates
(normalised points times the frame size, 256x256 in the paper), whose pixel centres sit at
``i + 0.5``; cwm's pixel coordinates put centres at integers, so ``raster = ours + 0.5``. The
metrics depend only on differences, so either convention scores the same as long as the
prediction and the ground truth share it.
"""
from __future__ import annotations

import numpy as np

from cwm.errors import ConfigError, InputError

#: Pixel thresholds of ``pts_within_*`` and ``jaccard_*`` (at 256x256 in the protocol).
THRESHOLDS = (1, 2, 4, 8, 16)
QUERY_MODES = ("first", "strided")
#: The keys :func:`tapvid_metrics` returns.
METRIC_KEYS = ("occlusion_accuracy", *(f"pts_within_{d}" for d in THRESHOLDS),
               *(f"jaccard_{d}" for d in THRESHOLDS), "average_jaccard", "average_pts_within_thresh")


def _evaluated(query_frames: np.ndarray, num_frames: int, query_mode: str) -> np.ndarray:
    """``[b, n, t]`` bool, the frames each track is scored on: after its query frame ("first":
    the protocol assumes everything before is occluded) or all but the query frame ("strided")."""
    frames = np.arange(num_frames)
    q = query_frames[..., None]
    return frames > q if query_mode == "first" else frames != q


def tapvid_metrics(query_points, gt_occluded, gt_tracks, pred_occluded, pred_tracks,
                   query_mode: str, per_track: bool = False) -> dict[str, np.ndarray]:
    """The TAP-Vid metrics of predicted tracks, per video (or per track), as the official code.

    Args:
        query_points: ``[b, n, 3]`` float ``(t, y, x)`` (official order; only ``t`` is used,
            rounded to the nearest frame).
        gt_occluded, pred_occluded: ``[b, n, t]`` bool, True = occluded.
        gt_tracks, pred_tracks: ``[b, n, t, 2]`` float ``(x, y)`` pixels (raster coordinates of
            256x256 frames for the paper's thresholds).
        query_mode: ``"first"`` (score frames after the query frame) or ``"strided"`` (every frame
            but the query frame).
        per_track: per-track scores ``[b, n]`` instead of per-video ``[b]``
            (the official ``get_trackwise_metrics``).
    Returns:
        :data:`METRIC_KEYS` -> float64 ``[b]`` (or ``[b, n]``): ``occlusion_accuracy`` (fraction of
        scored frames whose occlusion flag is right), ``pts_within_d`` (fraction of visible scored
        points predicted within ``d`` px, occlusion flags ignored), ``jaccard_d`` (true positives
        / (true positives + false positives + false negatives), a true positive being a visible
        point predicted visible within ``d`` px), and their means over ``d``:
        ``average_jaccard`` (AJ) and ``average_pts_within_thresh`` (< delta avg). A ratio with
        nothing to count is NaN, as in the official code. The benchmark score is the mean over
        videos.
    Raises:
        ConfigError: an unknown ``query_mode``. InputError: inconsistent shapes, or a query frame
            outside the video.
    """
    if query_mode not in QUERY_MODES:
        raise ConfigError(f"query_mode must be one of {', '.join(QUERY_MODES)} (got {query_mode!r})")
    q = np.asarray(query_points, np.float64)
    gt_occ, pred_occ = np.asarray(gt_occluded, bool), np.asarray(pred_occluded, bool)
    gt, pred = np.asarray(gt_tracks, np.float64), np.asarray(pred_tracks, np.float64)
    if gt_occ.ndim != 3:
        raise InputError(f"gt_occluded must be [b, n, t] bool, got shape {gt_occ.shape}")
    b, n, t = gt_occ.shape
    for name, a, want in (("query_points", q, (b, n, 3)), ("pred_occluded", pred_occ, (b, n, t)),
                          ("gt_tracks", gt, (b, n, t, 2)), ("pred_tracks", pred, (b, n, t, 2))):
        if a.shape != want:
            raise InputError(f"{name} must have shape {want} to match gt_occluded, got {a.shape}")
    query_frames = np.round(q[..., 0]).astype(np.int64)
    if ((query_frames < 0) | (query_frames >= t)).any():
        raise InputError(f"query_points: a query frame is outside the video's {t} frames")
    scored = _evaluated(query_frames, t, query_mode)
    axes = (2,) if per_track else (1, 2)
    visible, pred_visible = ~gt_occ, ~pred_occ

    def count(mask: np.ndarray) -> np.ndarray:
        return np.sum(mask & scored, axis=axes)

    out: dict[str, np.ndarray] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        out["occlusion_accuracy"] = count(pred_occ == gt_occ) / count(np.ones_like(scored))
        num_visible = count(visible)
        squared = np.sum((pred - gt) ** 2, axis=-1)
        within, jaccard = [], []
        for d in THRESHOLDS:
            close = squared < d * d
            within.append(count(close & visible) / num_visible)
            true_pos = count(close & visible & pred_visible)
            false_pos = count(pred_visible & ~(close & visible))   # visible but wrong, or hidden
            jaccard.append(true_pos / (num_visible + false_pos))
            out[f"pts_within_{d}"], out[f"jaccard_{d}"] = within[-1], jaccard[-1]
    out["average_jaccard"] = np.mean(np.stack(jaccard, axis=1), axis=1)
    out["average_pts_within_thresh"] = np.mean(np.stack(within, axis=1), axis=1)
    return {key: out[key] for key in METRIC_KEYS}


def _check_targets(target_occluded, target_points) -> tuple[np.ndarray, np.ndarray]:
    occ, points = np.asarray(target_occluded), np.asarray(target_points)
    if occ.ndim != 2 or points.shape != (*occ.shape, 2):
        raise InputError(f"target_occluded must be [n, t] and target_points [n, t, 2]; got "
                         f"{occ.shape} and {points.shape}")
    return occ, points


def sample_queries_first(target_occluded, target_points, frames) -> dict[str, np.ndarray]:
    """Query each track at its first visible frame (TAP-Vid "first"), as the official function.

    Args:
        target_occluded: ``[n, t]`` bool, True = occluded.
        target_points: ``[n, t, 2]`` ``(x, y)`` (any units; the protocol uses raster pixels).
        frames: ``[t, H, W, 3]``, passed through.
    Returns:
        ``video [1, t, H, W, 3]``, ``query_points [1, m, 3]`` float64 ``(t, y, x)`` (official
        order), ``target_points [1, m, t, 2]``, ``occluded [1, m, t]``: the ``m`` tracks visible
        somewhere, in their original order (never-visible tracks are dropped).
    """
    occ, points = _check_targets(target_occluded, target_points)
    keep = np.sum(~occ.astype(bool), axis=1) > 0
    occ, points = occ[keep], points[keep]
    first = np.argmax(occ == 0, axis=1)
    rows = np.arange(len(points))
    queries = np.stack([first.astype(np.float64), points[rows, first, 1], points[rows, first, 0]], -1)
    if not len(points):
        # The official code fails here (nothing to stack); an empty query set is the honest answer.
        queries = np.zeros((0, 3))
    return {"video": np.asarray(frames)[None], "query_points": queries[None],
            "target_points": points[None], "occluded": occ[None]}


def sample_queries_strided(target_occluded, target_points, frames,
                           query_stride: int = 5) -> dict[str, np.ndarray]:
    """Query every track at frames ``0, s, 2s, ...`` where it is visible (TAP-Vid "strided").

    Args: as :func:`sample_queries_first`, plus ``query_stride`` s >= 1.
    Returns:
        As :func:`sample_queries_first`, with one query per (query frame, visible track), ordered
        by query frame then track, and ``trackgroup [1, m]`` int: the source track of each query.
    """
    occ, points = _check_targets(target_occluded, target_points)
    if int(query_stride) != query_stride or query_stride < 1:
        raise ConfigError(f"query_stride must be an integer >= 1 (got {query_stride!r})")
    queries, tracks, occs, groups = [], [], [], []
    track_ids = np.arange(occ.shape[0])
    for t in range(0, occ.shape[1], int(query_stride)):
        sel = occ[:, t] == 0
        queries.append(np.stack([np.full(int(sel.sum()), float(t)), points[sel, t, 1], points[sel, t, 0]], -1))
        tracks.append(points[sel])
        occs.append(occ[sel])
        groups.append(track_ids[sel])
    return {"video": np.asarray(frames)[None], "query_points": np.concatenate(queries)[None],
            "target_points": np.concatenate(tracks)[None], "occluded": np.concatenate(occs)[None],
            "trackgroup": np.concatenate(groups)[None]}


def queries_txy(query_points_tyx) -> np.ndarray:
    """Official ``(t, y, x)`` queries ``[..., 3]`` -> cwm's ``(t, x, y)`` (and back: it is its own
    inverse)."""
    q = np.asarray(query_points_tyx)
    if q.shape[-1:] != (3,):
        raise InputError(f"queries must be [..., 3], got shape {q.shape}")
    return q[..., [0, 2, 1]]
