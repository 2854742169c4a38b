"""Accuracy metrics for flow, occlusion, segments and depth (numpy only).

Conventions: flow ``[H, W, 2]`` float ``(dx, dy)``; masks ``[H, W]`` bool; points ``(x, y)``.
Every function scores one frame pair; the evaluation harness averages over scenes.

- Flow (Sintel/KITTI style): end-point error (EPE) over all valid pixels and over the
  non-occluded ones, Fl-all (fraction of outliers: error > 3 px **and** > 5 % of the true
  magnitude), and the fractions of pixels with error below 1, 3 and 5 px. Fractions are in [0, 1].
- Occlusion: precision, recall and F1 of the occluded class.
- Segments: IoU of point-prompted masks; for a set of masks, Hungarian matching on IoU
  (scipy.optimize.linear_sum_assignment), then mIoU (mean over ground-truth masks, unmatched = 0)
  and AR (recall averaged over IoU thresholds 0.50:0.05:0.95, the SpelkeBench protocol).
- Depth: ordinal accuracy on random point pairs (the ZWM protocol) and Spearman rank correlation.
  Predictions are *inverse* depths (larger = nearer), as ``DepthResult.inverse_depth``.
- Point tracking: the TAP-Vid protocol (:func:`tapvid_metrics`, re-exported from
  :mod:`cwm.metrics_tapvid`, which keeps the official ``(t, y, x)`` query order).
"""

from __future__ import annotations

import numpy as np

from cwm.errors import InputError
from cwm.metrics_tapvid import tapvid_metrics  # noqa: F401  (re-exported)

FL_ABS_THRESHOLD = 3.0      # px, KITTI outlier threshold
FL_REL_THRESHOLD = 0.05     # fraction of the true flow magnitude
ACCURACY_THRESHOLDS = (1.0, 3.0, 5.0)
AR_THRESHOLDS = tuple(np.round(np.arange(0.50, 0.951, 0.05), 2))


def _check_flow(name: str, flow: np.ndarray) -> np.ndarray:
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[-1] != 2:
        raise InputError(f"{name} must be a flow array [H, W, 2], got shape {flow.shape}")
    return flow.astype(np.float64, copy=False)


def _check_mask(name: str, mask: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    if mask is None:
        return np.ones(shape, bool)
    mask = np.asarray(mask)
    if mask.shape != shape:
        raise InputError(f"{name} must have shape {shape}, got {mask.shape}")
    return mask.astype(bool, copy=False)


def endpoint_error(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-pixel end-point error ``|pred - gt|`` ``[H, W]`` of two flows ``[H, W, 2]``."""
    pred, gt = _check_flow("pred", pred), _check_flow("gt", gt)
    if pred.shape != gt.shape:
        raise InputError(f"pred and gt flows differ in shape: {pred.shape} vs {gt.shape}")
    return np.sqrt(np.sum((pred - gt) ** 2, axis=-1))


def flow_metrics(pred: np.ndarray, gt: np.ndarray, occlusion: np.ndarray | None = None,
                 valid: np.ndarray | None = None) -> dict[str, float]:
    """Flow accuracy of one pair.

    Args:
        pred, gt: ``[H, W, 2]`` flows ``(dx, dy)`` in pixels.
        occlusion: ``[H, W]`` bool, True where the frame-0 pixel is not visible in frame 1
            (``Scene.occlusion``: covered or out of frame). ``epe_noc`` uses the other pixels.
        valid: ``[H, W]`` bool, pixels with ground truth (KITTI); default all.

    Returns:
        ``epe``, ``epe_noc``, ``epe_occ`` (px; NaN when no such pixel), ``fl_all`` and
        ``acc_1px``, ``acc_3px``, ``acc_5px`` (fractions of valid pixels).
    """
    err = endpoint_error(pred, gt)
    shape = err.shape
    valid = _check_mask("valid", valid, shape)
    occ = np.zeros(shape, bool) if occlusion is None else _check_mask("occlusion", occlusion, shape)
    magnitude = np.sqrt(np.sum(np.asarray(gt, np.float64) ** 2, axis=-1))
    outlier = (err > FL_ABS_THRESHOLD) & (err > FL_REL_THRESHOLD * magnitude)

    def mean(values: np.ndarray, where: np.ndarray) -> float:
        return float(values[where].mean()) if where.any() else float("nan")

    out = {"epe": mean(err, valid), "epe_noc": mean(err, valid & ~occ),
           "epe_occ": mean(err, valid & occ), "fl_all": mean(outlier, valid)}
    for threshold in ACCURACY_THRESHOLDS:
        out[f"acc_{threshold:g}px"] = mean(err < threshold, valid)
    return out


def mean_metrics(results: list[dict[str, float]]) -> dict[str, float]:
    """Average each key over a list of per-pair metric dicts, ignoring NaNs (NaN if all are)."""
    if not results:
        return {}
    out = {}
    for key in results[0]:
        values = np.array([r[key] for r in results], np.float64)
        out[key] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    return out


def confusion_counts(pred: np.ndarray, gt: np.ndarray,
                     valid: np.ndarray | None = None) -> tuple[int, int, int]:
    """``(true positives, false positives, false negatives)`` of two ``[H, W]`` bool masks."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise InputError(f"pred and gt masks differ in shape: {pred.shape} vs {gt.shape}")
    valid = _check_mask("valid", valid, gt.shape)
    tp = int(np.sum(pred & gt & valid))
    return tp, int(np.sum(pred & ~gt & valid)), int(np.sum(~pred & gt & valid))


def precision_recall_f1(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Precision, recall and F1 from counts; an empty denominator gives 0 (no positives: F1 1)."""
    if tp + fp + fn == 0:
        return {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1)}


def occlusion_metrics(pred: np.ndarray, gt: np.ndarray,
                      valid: np.ndarray | None = None) -> dict[str, float]:
    """Precision, recall and F1 of a predicted occlusion mask ``[H, W]`` (True = occluded)."""
    return precision_recall_f1(*confusion_counts(pred, gt, valid))


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks; two empty masks give 1."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if a.shape != b.shape:
        raise InputError(f"masks differ in shape: {a.shape} vs {b.shape}")
    union = np.sum(a | b)
    return float(np.sum(a & b) / union) if union else 1.0


def point_iou(pred: np.ndarray, instances: np.ndarray, point: tuple[float, float]) -> float:
    """IoU of a point-prompted mask with the ground-truth segment under the point.

    Args:
        pred: ``[H, W]`` bool, the predicted segment for the prompt.
        instances: ``[H, W]`` int ground-truth ids (``Scene.instances[t]``).
        point: ``(x, y)`` pixel of the prompt; it is rounded to the nearest pixel.
    """
    instances = np.asarray(instances)
    x, y = int(round(point[0])), int(round(point[1]))
    if not (0 <= y < instances.shape[0] and 0 <= x < instances.shape[1]):
        raise InputError(f"point {point} is outside the image of size {instances.shape}")
    return mask_iou(pred, instances == instances[y, x])


def instance_masks(instances: np.ndarray, include_background: bool = False) -> np.ndarray:
    """``[N, H, W]`` bool masks, one per id present (ascending), background id 0 left out."""
    ids = np.unique(instances)
    if not include_background:
        ids = ids[ids != 0]
    return np.asarray(instances)[None] == ids[:, None, None]


def iou_matrix(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """``[P, G]`` IoU between every predicted ``[P, H, W]`` and ground-truth ``[G, H, W]`` mask."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.ndim != 3 or gt.ndim != 3 or pred.shape[1:] != gt.shape[1:]:
        raise InputError(f"masks must be [N, H, W] of one size, got {pred.shape} and {gt.shape}")
    p = pred.reshape(len(pred), -1).astype(np.float64)
    g = gt.reshape(len(gt), -1).astype(np.float64)
    inter = p @ g.T
    union = p.sum(1)[:, None] + g.sum(1)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def segment_metrics(pred: np.ndarray, gt: np.ndarray,
                    thresholds: tuple[float, ...] = AR_THRESHOLDS) -> dict[str, float]:
    """mIoU and AR of predicted masks ``[P, H, W]`` against ground truth ``[G, H, W]``.

    Each ground-truth mask is matched to at most one prediction (Hungarian, maximum total IoU).
    ``miou``: mean matched IoU over ground-truth masks (unmatched count as 0). ``ar``: the
    fraction of ground-truth masks whose matched IoU >= t, averaged over ``thresholds``.
    Also ``recall_50`` (t = 0.5). With no ground-truth masks, every score is NaN.
    """
    from scipy.optimize import linear_sum_assignment

    gt = np.asarray(gt, bool)
    if len(gt) == 0:
        return {"miou": float("nan"), "ar": float("nan"), "recall_50": float("nan")}
    best = np.zeros(len(gt))
    if len(pred):
        iou = iou_matrix(pred, gt)
        rows, cols = linear_sum_assignment(iou, maximize=True)
        best[cols] = iou[rows, cols]
    recalls = [float(np.mean(best >= t - 1e-9)) for t in thresholds]
    return {"miou": float(best.mean()), "ar": float(np.mean(recalls)),
            "recall_50": float(np.mean(best >= 0.5 - 1e-9))}


def _depth_inputs(pred_inverse_depth: np.ndarray, gt_depth: np.ndarray,
                  valid: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = np.asarray(pred_inverse_depth, np.float64), np.asarray(gt_depth, np.float64)
    if pred.shape != gt.shape or pred.ndim != 2:
        raise InputError(f"depth maps must be [H, W] of one size, got {pred.shape} and {gt.shape}")
    keep = _check_mask("valid", valid, gt.shape) & np.isfinite(pred) & np.isfinite(gt) & (gt > 0)
    return pred[keep], gt[keep]


def depth_ordinal_accuracy(pred_inverse_depth: np.ndarray, gt_depth: np.ndarray,
                           num_pairs: int = 2000, min_ratio: float = 1.02, seed: int = 0,
                           valid: np.ndarray | None = None) -> float:
    """Fraction of random point pairs whose depth order the prediction gets right.

    Pairs are drawn uniformly (fixed ``seed``) among valid pixels; pairs whose true depths differ
    by less than ``min_ratio`` (farther / nearer) are skipped as ambiguous. A pair is right when
    the nearer point has the larger predicted inverse depth; a predicted tie counts as half.
    Returns NaN when no pair qualifies.
    """
    pred, gt = _depth_inputs(pred_inverse_depth, gt_depth, valid)
    if pred.size < 2:
        return float("nan")
    rng = np.random.default_rng(seed)
    i, j = rng.integers(0, pred.size, (2, num_pairs))
    ratio = np.maximum(gt[i], gt[j]) / np.minimum(gt[i], gt[j])
    keep = ratio >= min_ratio
    if not keep.any():
        return float("nan")
    truth = np.sign(gt[j] - gt[i])[keep]              # +1: i is nearer
    guess = np.sign(pred[i] - pred[j])[keep]          # +1: i predicted nearer
    return float(np.mean(np.where(guess == 0, 0.5, guess == truth)))


def depth_spearman(pred_inverse_depth: np.ndarray, gt_depth: np.ndarray,
                   valid: np.ndarray | None = None) -> float:
    """Spearman rank correlation of predicted with true inverse depth (1 = perfect)."""
    from scipy.stats import spearmanr

    pred, gt = _depth_inputs(pred_inverse_depth, gt_depth, valid)
    if pred.size < 2 or np.ptp(pred) == 0 or np.ptp(gt) == 0:
        return float("nan")
    return float(spearmanr(pred, 1.0 / gt).statistic)
