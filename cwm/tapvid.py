"""The TAP-Vid benchmark, run end to end: read the official pickles, track, score, report.

Data (downloaded by the user, see README "Reproduce a benchmark"): ``tapvid_davis.pkl`` is a dict
``{video_name: entry}``; the Kinetics shards and ``tapvid_rgb_stacking.pkl`` are lists of entries.
An entry holds ``video`` (uint8 ``[T, H, W, 3]``, or a list of encoded JPEG/PNG frames),
``points`` (``[N, T, 2]`` float, ``(x, y)`` normalised to [0, 1]) and ``occluded`` (``[N, T]``
bool). Pickles are read only through :func:`cwm.flowio.safe_load_pickle` (numpy arrays and
builtin containers, never arbitrary code).

The protocol, as the official evaluation: frames resized to 256x256 (PIL Lanczos here); points
scaled to that raster (``points * 256``); queries sampled ``first`` or ``strided`` (stride 5) by
:mod:`cwm.metrics_tapvid`; metrics per video, then the plain mean over videos. Trackers receive
the queries in cwm's convention -- ``(t, x, y)`` pixels with centres at integers, i.e. raster
minus 0.5 -- and their tracks are shifted back before scoring. In ``first`` mode the frames before
a query are not scored, so trackers skip them (``backward=False``).

Methods: ``cwm`` (the model's probe, in the chosen composition mode), ``zero`` (every point stays
at its query and is always visible), ``dis_chained`` and ``dis_direct`` (OpenCV DIS flow sampled
at the points, with forward-backward occlusion).
"""
from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from os import PathLike

import numpy as np

from cwm.errors import ConfigError, InputError
from cwm.metrics_tapvid import METRIC_KEYS, sample_queries_first, sample_queries_strided, tapvid_metrics

RESOLUTION = (256, 256)
QUERY_STRIDE = 5
METHODS = ("cwm", "zero", "dis_chained", "dis_direct")
SUMMARY_KEYS = ("average_jaccard", "average_pts_within_thresh", "occlusion_accuracy")


@dataclass
class Video:
    """One validated entry: ``video`` uint8 ``[T, H, W, 3]`` (or encoded frames, decoded on use),
    ``points [N, T, 2]`` float64 in [0, 1], ``occluded [N, T]`` bool."""

    name: str
    video: object
    points: np.ndarray
    occluded: np.ndarray


def _entries(data: object, path: str) -> list[tuple[str, object]]:
    if isinstance(data, dict):
        if {"video", "points", "occluded"} <= set(data):
            raise InputError(f"{path}: a single entry, not a dataset: expected a dict of videos or a list")
        return [(str(k), v) for k, v in data.items()]
    if isinstance(data, (list, tuple)):
        return [(str(i), v) for i, v in enumerate(data)]
    raise InputError(f"{path}: expected a dict of videos (DAVIS) or a list (Kinetics, RGB-Stacking), "
                     f"got {type(data).__name__}")


def _validate(path: str, name: str, entry: object) -> Video:
    where = f"{path}: video {name!r}"
    if not isinstance(entry, dict):
        raise InputError(f"{where} is a {type(entry).__name__}, not a dict")
    missing = [k for k in ("video", "points", "occluded") if k not in entry]
    if missing:
        raise InputError(f"{where} has no key {missing[0]!r} (needs 'video', 'points', 'occluded')")
    video = entry["video"]
    if isinstance(video, np.ndarray):
        if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3 or min(video.shape[:3]) < 1:
            raise InputError(f"{where}: 'video' must be uint8 [T, H, W, 3], got {video.dtype} {video.shape}")
        count = video.shape[0]
    elif isinstance(video, (list, tuple)) and video and all(isinstance(f, (bytes, bytearray)) for f in video):
        count = len(video)
    else:
        raise InputError(f"{where}: 'video' must be a uint8 [T, H, W, 3] array or a list of encoded frames")
    try:
        points = np.asarray(entry["points"], np.float64)
        occluded = np.asarray(entry["occluded"])
    except (TypeError, ValueError):
        raise InputError(f"{where}: 'points' and 'occluded' must be numeric arrays") from None
    if points.ndim != 3 or points.shape[1:] != (count, 2):
        raise InputError(f"{where}: 'points' must be [N, {count}, 2] for {count} frames, got {points.shape}")
    if occluded.shape != points.shape[:2] or occluded.dtype.kind not in "bui":
        raise InputError(f"{where}: 'occluded' must be bool [N, T] = {points.shape[:2]}, got "
                         f"{occluded.dtype} {occluded.shape}")
    occluded = occluded.astype(bool)
    seen = points[~occluded]
    if not np.isfinite(seen).all():
        raise InputError(f"{where}: a visible point is NaN or inf")
    if ((seen < 0) | (seen > 1)).any():
        i, t = np.argwhere(~occluded & ((points < 0) | (points > 1)).any(-1))[0]
        raise InputError(f"{where}: visible point {i} at frame {t} is outside the frame "
                         f"({points[i, t, 0]:g}, {points[i, t, 1]:g}; coordinates must be in [0, 1])")
    return Video(name, video, points, occluded)


def read_tapvid_dataset(path: str | PathLike) -> list[Video]:
    """Every entry of a TAP-Vid pickle, validated up front (InputError names the video and the
    problem: a missing key, a wrong shape or dtype, a visible point outside the frame)."""
    from cwm.flowio import safe_load_pickle

    data = safe_load_pickle(path)
    entries = _entries(data, str(path))
    if not entries:
        raise InputError(f"{path}: holds no videos")
    return [_validate(str(path), name, entry) for name, entry in entries]


def frames_at(video: Video, size: tuple[int, int] = RESOLUTION) -> np.ndarray:
    """The video as uint8 ``[T, h, w, 3]`` at ``size = (h, w)``: decoded, RGB, resized (PIL
    Lanczos) when it is not already that size."""
    from PIL import Image

    frames = []
    raw = video.video
    for i in range(len(raw)):
        if isinstance(raw, np.ndarray):
            image = Image.fromarray(raw[i])
        else:
            try:
                image = Image.open(io.BytesIO(bytes(raw[i]))).convert("RGB")
                image.load()
            except (OSError, ValueError) as e:
                raise InputError(f"video {video.name!r}: frame {i} cannot be decoded ({e})") from None
        if image.size != (size[1], size[0]):
            image = image.resize((size[1], size[0]), Image.Resampling.LANCZOS)
        frames.append(np.asarray(image, np.uint8))
    return np.stack(frames)


def protocol_inputs(video: Video, query_mode: str, size: tuple[int, int] = RESOLUTION) -> dict:
    """The official sampler's output for one video at ``size``: ``query_points [1, n, 3]``
    ``(t, y, x)`` raster, ``target_points [1, n, T, 2]`` ``(x, y)``, ``occluded [1, n, T]``."""
    raster = video.points * np.array([size[1], size[0]], np.float64)
    if query_mode == "first":
        return sample_queries_first(video.occluded, raster, None)
    if query_mode == "strided":
        return sample_queries_strided(video.occluded, raster, None, QUERY_STRIDE)
    raise ConfigError(f"query mode must be first or strided (got {query_mode!r})")


def to_cwm_queries(query_points: np.ndarray, size: tuple[int, int] = RESOLUTION) -> np.ndarray:
    """Official ``(t, y, x)`` raster queries ``[n, 3]`` -> cwm ``(t, x, y)`` pixels (centres at
    integers), nudged inside the frame (a point on the far edge, 1.0, would be half a pixel out)."""
    q = np.asarray(query_points, np.float64)[:, [0, 2, 1]].copy()
    q[:, 1:] -= 0.5
    q[:, 1] = np.clip(q[:, 1], -0.5, size[1] - 0.5 - 1e-6)
    q[:, 2] = np.clip(q[:, 2], -0.5, size[0] - 0.5 - 1e-6)
    return q


#: A method: ``(frames [T, H, W, 3], queries [n, 3] (t, x, y), backward) -> (tracks [n, T, 2], occluded [n, T])``.
Method = Callable[[np.ndarray, np.ndarray, bool], tuple[np.ndarray, np.ndarray]]


def zero_method(frames: np.ndarray, queries: np.ndarray, backward: bool) -> tuple[np.ndarray, np.ndarray]:
    """Every point stays at its query and is visible in every frame."""
    tracks = np.repeat(queries[:, None, 1:], len(frames), axis=1)
    return tracks, np.zeros(tracks.shape[:2], bool)


def pair_method(pair, mode: str, gap: int = 5, redetect: int = 4) -> Method:
    """A :data:`Method` from a pair tracker composed by :func:`probes.tracking.track_video`."""
    def method(frames, queries, backward):
        from probes.tracking import track_video

        result = track_video(pair, frames, queries, mode=mode, gap=gap, backward=backward, redetect=redetect)
        return result.tracks.astype(np.float64), result.occluded

    return method


def predictor_method(predictor, mode: str, gap: int = 5, redetect: int = 4) -> Method:
    """A :data:`Method` that tracks through ``predictor.track_video`` (the CWM's own tracker)."""
    def method(frames, queries, backward):
        result = predictor.track_video(frames, queries, mode=mode, gap=gap, backward=backward, redetect=redetect)
        return result.tracks.astype(np.float64), result.occluded

    return method


def baseline_methods(redetect: int = 4) -> dict[str, Method]:
    """``zero``, ``dis_chained`` and ``dis_direct``."""
    from probes.pair_trackers import flow_pair_tracker

    dis = flow_pair_tracker()
    return {"zero": zero_method, "dis_chained": pair_method(dis, "chained", redetect=redetect),
            "dis_direct": pair_method(dis, "direct")}


def evaluate(videos: list[Video], methods: dict[str, Method], query_mode: str = "first",
             size: tuple[int, int] = RESOLUTION, progress: Callable[[str], None] | None = None) -> dict:
    """Score each method on each video; the report of :func:`run_tapvid` (without file names)."""
    rows: dict[str, dict[str, dict]] = {name: {} for name in methods}
    skipped = []
    for video in videos:
        inputs = protocol_inputs(video, query_mode, size)
        if inputs["query_points"].shape[1] == 0:
            skipped.append(video.name)           # no visible point to query: nothing to score
            continue
        frames = frames_at(video, size)
        queries = to_cwm_queries(inputs["query_points"][0], size)
        for name, method in methods.items():
            tracks, occluded = method(frames, queries, query_mode == "strided")
            scores = tapvid_metrics(inputs["query_points"], inputs["occluded"], inputs["target_points"],
                                    np.asarray(occluded, bool)[None], (np.asarray(tracks) + 0.5)[None],
                                    query_mode)
            rows[name][video.name] = {k: _number(v[0]) for k, v in scores.items()}
            if progress is not None:
                progress(name)
    report = {"query_mode": query_mode, "resolution": list(size), "num_videos": len(videos) - len(skipped),
              "skipped_videos": skipped, "methods": {}}
    for name, per_video in rows.items():
        summary = {}
        for key in METRIC_KEYS:
            values = np.array([np.nan if r[key] is None else r[key] for r in per_video.values()], np.float64)
            summary[key] = _number(np.mean(values)) if len(values) else None
        report["methods"][name] = {**summary, "videos": per_video}
    return report


def _number(value) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def format_report(report: dict) -> str:
    """A plain-text table: one row per method, the three headline metrics in percent."""
    head = f"{'method':<14}{'AJ':>8}{'<d_avg':>8}{'OA':>8}"
    lines = [f"TAP-Vid protocol, query mode {report['query_mode']}, {report['num_videos']} videos at "
             f"{report['resolution'][1]}x{report['resolution'][0]}", head, "-" * len(head)]
    for name, m in report["methods"].items():
        cells = ["     n/a" if m[k] is None else f"{100 * m[k]:8.1f}" for k in SUMMARY_KEYS]
        lines.append(f"{name:<14}" + "".join(cells))
    return "\n".join(lines)
