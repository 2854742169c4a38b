"""Stereo depth by ordinal point pairs, as ZWM grades it: read, track, pair, score.

Data (ZWM's layout): a folder with ``dataset.json`` and ``frames/``. ``dataset.json`` is a list
of entries, two per image, ``uid`` ending ``_point0`` and ``_point1``; each names
``query_frame_file`` and ``target_frame_file`` (the two views, relative to ``frames/``), a point
``query_x_raster, query_y_raster`` and ``target_x_raster, target_y_raster`` (normalised to [0, 1]
of the frame's width and height), its ground-truth ``depth`` (> 0) and a ``dataset_name``.

Each point is tracked from the query view to the target view; its end-point error (EPE, in the
frame's pixels) is ``|predicted - target|``. When an entry's target is its query point this is
the length of the predicted disparity, which is larger for nearer points. A pair is **correct**
when ``(depth0 < depth1) == (epe0 > epe1)`` (an EPE tie counts as "point 1 nearer"). Reported per
``dataset_name`` (and overall): the number of pairs, accuracy in percent, its binomial standard
error, a 95% bootstrap interval (10,000 resamples, seeded) and the mean depth ratio
``min(d1_hat, d1) / max(d1_hat, d1)`` with ``d1_hat = depth0 * epe0 / epe1`` (0 when an EPE is 0).
Entries without their partner are skipped and counted, as in ZWM's grader.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cwm.errors import InputError

KEYS = ("uid", "dataset_name", "depth", "query_frame_file", "target_frame_file",
        "query_x_raster", "query_y_raster", "target_x_raster", "target_y_raster")
NUM_BOOTSTRAP = 10000


@dataclass
class StereoPair:
    """Two points of one image pair: ``query [2, 2]``, ``target [2, 2]`` normalised ``(x, y)``,
    ``depth [2]``; ``files`` = (query view, target view)."""

    uid: str
    dataset: str
    files: tuple[Path, Path]
    query: np.ndarray
    target: np.ndarray
    depth: np.ndarray


def _entry(path: Path, frames: Path, i: int, entry: object) -> dict:
    if not isinstance(entry, dict):
        raise InputError(f"{path}: entry {i} is not an object")
    missing = [k for k in KEYS if k not in entry]
    if missing:
        raise InputError(f"{path}: entry {i} has no key {missing[0]!r}")
    for k in KEYS[2:3] + KEYS[5:]:
        v = entry[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise InputError(f"{path}: entry {i} ({entry['uid']!r}): {k} must be a finite number")
    if entry["depth"] <= 0:
        raise InputError(f"{path}: entry {i} ({entry['uid']!r}): depth must be > 0")
    for k in KEYS[5:]:
        if not 0 <= entry[k] <= 1:
            raise InputError(f"{path}: entry {i} ({entry['uid']!r}): point {k} = {entry[k]:g} is outside "
                             f"the frame (must be in [0, 1])")
    for k in ("query_frame_file", "target_frame_file"):
        if not isinstance(entry[k], str) or not (frames / entry[k]).is_file():
            raise InputError(f"{path}: entry {i} ({entry['uid']!r}): frame file {entry[k]!r} not found in {frames}")
    return entry


def read_stereo_dataset(folder: str | Path, frames: str | Path | None = None) -> tuple[list[StereoPair], int]:
    """Validated point pairs of a ZWM stereo-depth folder, and the number of unpaired entries."""
    folder = Path(folder)
    path = folder / "dataset.json" if folder.is_dir() else folder
    frames = Path(frames) if frames is not None else path.parent / "frames"
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{path} is not valid JSON ({' '.join(str(e).split())[:60]})") from None
    if not isinstance(data, list) or not data:
        raise InputError(f"{path}: expected a non-empty list of entries")
    entries = {}
    for i, raw in enumerate(data):
        e = _entry(path, frames, i, raw)
        entries[str(e["uid"])] = e
    pairs, unpaired = [], 0
    for uid in sorted(entries):
        if not uid.endswith("_point0"):
            continue
        other = entries.get(uid[: -len("_point0")] + "_point1")
        if other is None:
            unpaired += 1
            continue
        a = entries[uid]
        if (a["dataset_name"], a["query_frame_file"], a["target_frame_file"]) != \
                (other["dataset_name"], other["query_frame_file"], other["target_frame_file"]):
            raise InputError(f"{path}: pair {uid[:-7]!r}: its two points name different images or datasets")
        pairs.append(StereoPair(uid[:-7], str(a["dataset_name"]),
                                (frames / a["query_frame_file"], frames / a["target_frame_file"]),
                                np.array([[e["query_x_raster"], e["query_y_raster"]] for e in (a, other)]),
                                np.array([[e["target_x_raster"], e["target_y_raster"]] for e in (a, other)]),
                                np.array([a["depth"], other["depth"]], np.float64)))
    unpaired += sum(1 for uid in entries if uid.endswith("_point1")
                    and uid[: -len("_point1")] + "_point0" not in entries)
    if not pairs:
        raise InputError(f"{path}: no complete _point0/_point1 pair")
    return pairs, unpaired


def grade_pair(depth: np.ndarray, epe: np.ndarray) -> tuple[bool, float]:
    """``(correct, ratio)`` of one pair from ground-truth depths ``[2]`` and EPEs ``[2]``."""
    correct = bool((depth[0] < depth[1]) == (epe[0] > epe[1]))
    d1_hat = depth[0] * epe[0] / epe[1] if epe[0] > 0 and epe[1] > 0 else 0.0
    ratio = min(d1_hat, depth[1]) / max(d1_hat, depth[1]) if d1_hat > 0 else 0.0
    return correct, float(ratio)


def summarise(correct: list[bool], ratios: list[float], seed: int = 0) -> dict:
    """N, accuracy (%), binomial SEM (%), 95% bootstrap interval (%), mean ratio."""
    c = np.asarray(correct, np.float64)
    n = len(c)
    p = float(c.mean())
    rng = np.random.default_rng(seed)
    boots = c[rng.integers(0, n, (NUM_BOOTSTRAP, n))].mean(axis=1) * 100
    return {"pairs": n, "accuracy": 100 * p, "sem": 100 * math.sqrt(p * (1 - p) / n),
            "ci95": [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))],
            "ratio_mean": float(np.mean(ratios))}


#: ``(query_view, target_view, points [N, 2] (x, y) pixels) -> predicted points [N, 2]``.
Method = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def dis_method(query: np.ndarray, target: np.ndarray, points: np.ndarray) -> np.ndarray:
    """DIS flow (medium) sampled bilinearly at the points."""
    from cwm.baselines import dis_flow
    from probes.pair_trackers import sample_field

    return points + sample_field(dis_flow(query, target), points)


def evaluate(pairs: list[StereoPair], methods: dict[str, Method],
             progress: Callable[[], None] | None = None) -> dict:
    """Grade every method on every pair; images are read once per (query, target) file pair."""
    from cwm.io import read_image

    groups: dict[tuple[Path, Path], list[StereoPair]] = {}
    for pair in pairs:
        groups.setdefault(pair.files, []).append(pair)
    graded: dict[str, dict[str, tuple[list, list]]] = {m: {} for m in methods}
    for files, members in groups.items():
        query, target = read_image(files[0]), read_image(files[1])
        if query.shape != target.shape:
            raise InputError(f"views differ in size: {files[0]} and {files[1]}")
        scale = np.array([query.shape[1], query.shape[0]], np.float64)
        q = np.concatenate([m.query for m in members]) * scale - 0.5
        t = np.concatenate([m.target for m in members]) * scale - 0.5
        for name, method in methods.items():
            pred = np.asarray(method(query, target, q), np.float64).reshape(-1, 2)
            epe = np.sqrt(np.sum((pred - t) ** 2, axis=1)).reshape(-1, 2)
            for member, e in zip(members, epe):
                correct, ratio = grade_pair(member.depth, e)
                for key in (member.dataset, "overall"):
                    slot = graded[name].setdefault(key, ([], []))
                    slot[0].append(correct)
                    slot[1].append(ratio)
            if progress is not None:
                progress()
    return {"methods": {name: {key: summarise(*rows) for key, rows in sorted(per.items())}
                        for name, per in graded.items()}}


def format_report(report: dict) -> str:
    head = f"{'method':<10}{'dataset':<20}{'pairs':>7}{'acc %':>8}{'sem':>7}{'95% CI':>16}{'ratio':>8}"
    lines = ["Stereo depth, ordinal point pairs (ZWM protocol)", head, "-" * len(head)]
    for name, per in report["methods"].items():
        for key, s in per.items():
            ci = f"{s['ci95'][0]:.1f}-{s['ci95'][1]:.1f}"
            lines.append(f"{name:<10}{key:<20}{s['pairs']:>7}{s['accuracy']:8.1f}{s['sem']:7.2f}{ci:>16}"
                         f"{s['ratio_mean']:8.3f}")
    return "\n".join(lines)
