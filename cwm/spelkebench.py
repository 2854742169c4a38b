"""SpelkeBench: read the benchmark file, segment at its probe points, score as SpelkeNet does.

Data (downloaded by the user, see README "Reproduce a benchmark"): SpelkeNet's
``spelke_bench.h5``, one group per image (keys such as ``entityseg_1_image1007``) holding
``rgb`` (uint8 ``[H, W, 3 or 4]``), ``segment`` (``[M, H, W]``, one ground-truth Spelke segment
per mask, nonzero = inside) and optionally ``centroid`` (``[M, 2]`` probe points ``(x, y)``, one
per segment). Reading needs ``h5py`` (``pip install h5py``); HDF5 holds arrays only, no code.

Protocol (as the ZWM / SpelkeNet evaluation runs it): the image is resized to 256x256
(OpenCV area), the segments to 256x256 (nearest); the model is poked once at each segment's
probe point (``centroid``, else a central point of the mask: its centre of mass when that lies
inside, else the point deepest inside); the per-image scores are averaged over images.

Scores per image (:func:`spelke_metrics`), with ``IoU[g, p]`` between ground truth ``g`` and
prediction ``p``:

- ``miou``: mean over ground-truth segments of the best IoU with any prediction (SpelkeNet's
  "IoU": ``iou_mat.max(-1)``, no matching);
- ``ar`` and ``ap``: predictions matched one-to-one to ground truth (Hungarian, maximum total IoU),
  then recall (true positives / ground-truth count) and precision (/ prediction count) averaged
  over IoU thresholds ``numpy.arange(0.50, 0.95, 0.05)`` -- which is 0.50, 0.55, ..., 0.90 (nine
  thresholds, as computed in floating point) although the reference docstrings say .50:.05:.95.
  An empty side scores 0.
- the second view, :func:`cwm.metrics.segment_metrics`: Hungarian-matched ``miou_hungarian``,
  and ``ar_95`` over the ten thresholds 0.50, 0.55, ..., 0.95 (COCO style).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from os import PathLike

import numpy as np

from cwm.errors import InputError
from cwm.metrics import iou_matrix, segment_metrics

#: The thresholds of SpelkeNet's and ZWM's AP/AR code: np.arange(0.50, 0.95, 0.05), nine values.
SPELKE_THRESHOLDS = np.arange(0.50, 0.95, 0.05)
RESOLUTION = 256
SUMMARY_KEYS = ("ar", "miou", "ap", "ar_95", "miou_hungarian")


def spelke_metrics(pred, gt) -> dict[str, float]:
    """SpelkeBench scores of predicted masks ``[P, H, W]`` against ground truth ``[G, H, W]``
    (bool or 0/1); see the module docstring for the definitions."""
    from scipy.optimize import linear_sum_assignment

    pred, gt = np.asarray(pred) > 0, np.asarray(gt) > 0
    if pred.ndim != 3 or gt.ndim != 3 or pred.shape[1:] != gt.shape[1:]:
        raise InputError(f"masks must be [N, H, W] of one size, got {pred.shape} and {gt.shape}")
    iou = iou_matrix(gt, pred) if len(gt) and len(pred) else np.zeros((len(gt), len(pred)))  # (G, P)
    rows, cols = linear_sum_assignment(1.0 - iou) if iou.size else (np.zeros(0, int), np.zeros(0, int))
    matched = iou[rows, cols]
    tp = np.array([np.count_nonzero(matched >= t) for t in SPELKE_THRESHOLDS], np.float64)
    out = {"ar": float(np.mean(tp / len(gt))) if len(gt) else 0.0,
           "ap": float(np.mean(tp / len(pred))) if len(pred) else 0.0,
           "miou": float(np.mean(iou.max(axis=1))) if iou.size else 0.0}
    second = segment_metrics(pred, gt)
    out["ar_95"], out["miou_hungarian"] = second["ar"], second["miou"]
    return out


def central_point(mask: np.ndarray) -> tuple[int, int]:
    """``(x, y)`` inside a non-empty bool mask ``[H, W]``: the rounded centre of mass if the
    mask holds it, else the pixel farthest from the mask's edge."""
    from scipy.ndimage import distance_transform_edt

    ys, xs = np.nonzero(mask)
    if not len(xs):
        raise InputError("a ground-truth segment is empty")
    cy, cx = int(np.round(ys.mean())), int(np.round(xs.mean()))
    if mask[cy, cx]:
        return cx, cy
    y, x = np.unravel_index(np.argmax(distance_transform_edt(mask)), mask.shape)
    return int(x), int(y)


@dataclass
class SpelkeImage:
    """One benchmark image at 256x256: ``image`` uint8 ``[256, 256, 3]``, ``segments`` bool
    ``[M, 256, 256]``, ``points`` ``[M, 2]`` ``(x, y)`` probe points."""

    name: str
    image: np.ndarray
    segments: np.ndarray
    points: np.ndarray


def _import_h5py():
    try:
        import h5py
    except ImportError:
        raise InputError("reading SpelkeBench needs h5py: pip install h5py") from None
    return h5py


def _prepare(path: str, name: str, group) -> SpelkeImage:
    import cv2

    where = f"{path}: image {name!r}"
    if not hasattr(group, "keys") or "rgb" not in group or "segment" not in group:
        raise InputError(f"{where} needs datasets 'rgb' and 'segment'")
    rgb, seg = np.asarray(group["rgb"]), np.asarray(group["segment"])
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] not in (3, 4):
        raise InputError(f"{where}: 'rgb' must be uint8 [H, W, 3 or 4], got {rgb.dtype} {rgb.shape}")
    if seg.ndim != 3 or seg.shape[1:] != rgb.shape[:2] or not len(seg):
        raise InputError(f"{where}: 'segment' must be [M, H, W] = [M, {rgb.shape[0]}, {rgb.shape[1]}] with M >= 1, "
                         f"got {seg.shape}")
    size = (RESOLUTION, RESOLUTION)
    image = np.ascontiguousarray(rgb[..., :3])
    if image.shape[:2] != size:
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    masks = seg > 0
    if masks.shape[1:] != size:
        masks = np.stack([cv2.resize(m.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0 for m in masks])
    if not masks.reshape(len(masks), -1).any(axis=1).all():
        raise InputError(f"{where}: a segment is empty at {RESOLUTION}x{RESOLUTION}")
    if "centroid" in group:
        points = np.asarray(group["centroid"], np.float64)[: len(masks)]
        if points.shape != (len(masks), 2) or not np.isfinite(points).all():
            raise InputError(f"{where}: 'centroid' must be [M, 2] (x, y) for its {len(masks)} segments")
        if ((points < 0) | (points > RESOLUTION - 1)).any():
            raise InputError(f"{where}: a 'centroid' probe point is outside the {RESOLUTION}x{RESOLUTION} image")
    else:
        points = np.array([central_point(m) for m in masks], np.float64)
    return SpelkeImage(name, image, masks, points)


def read_spelkebench(path: str | PathLike, max_images: int | None = None) -> list[SpelkeImage]:
    """The images of a SpelkeBench ``.h5`` (sorted keys; the first ``max_images``), each
    validated and prepared at 256x256 before any is scored."""
    h5py = _import_h5py()
    try:
        with h5py.File(path, "r") as f:
            names = sorted(f.keys())[:max_images]
            if not names:
                raise InputError(f"{path}: holds no images")
            return [_prepare(str(path), name, f[name]) for name in names]
    except OSError as e:
        raise InputError(f"cannot read SpelkeBench file {path}: {' '.join(str(e).split())[:100]}") from None


def bucket(name: str) -> str:
    """The source dataset of an image key (its leading letters: ``entityseg_1_image7`` ->
    ``entityseg``)."""
    match = re.match(r"[A-Za-z]+", name)
    return match.group(0) if match else "other"


def evaluate(images: list[SpelkeImage], methods: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]],
             progress: Callable[[], None] | None = None) -> dict:
    """Score ``methods`` (``(image, points [M, 2]) -> masks [M, H, W]``) on every image.

    Returns ``{"num_images", "methods": {name: {summary..., "buckets": {...}, "images": {...}}}}``,
    the summaries being plain means over images of :data:`SUMMARY_KEYS`.
    """
    report = {"num_images": len(images), "resolution": [RESOLUTION, RESOLUTION], "methods": {}}
    for name, method in methods.items():
        rows = {}
        for item in images:
            masks = np.asarray(method(item.image, item.points))
            rows[item.name] = spelke_metrics(masks, item.segments)
            if progress is not None:
                progress()
        summary = {k: float(np.mean([r[k] for r in rows.values()])) for k in SUMMARY_KEYS}
        groups: dict[str, list[dict]] = {}
        for key, r in rows.items():
            groups.setdefault(bucket(key), []).append(r)
        buckets = {b: {"count": len(rs), **{k: float(np.mean([r[k] for r in rs])) for k in SUMMARY_KEYS}}
                   for b, rs in sorted(groups.items())}
        report["methods"][name] = {**summary, "buckets": buckets, "images": rows}
    return report


def format_report(report: dict) -> str:
    """One row per method (and per source dataset), scores in percent."""
    head = f"{'method':<22}{'count':>6}" + "".join(f"{k:>16}" for k in SUMMARY_KEYS)
    lines = [f"SpelkeBench, {report['num_images']} images at {RESOLUTION}x{RESOLUTION}", head, "-" * len(head)]
    for name, m in report["methods"].items():
        lines.append(f"{name:<22}{report['num_images']:>6}" + "".join(f"{100 * m[k]:16.1f}" for k in SUMMARY_KEYS))
        for b, s in m["buckets"].items():
            lines.append(f"  {b:<20}{s['count']:>6}" + "".join(f"{100 * s[k]:16.1f}" for k in SUMMARY_KEYS))
    return "\n".join(lines)
