"""Metrics on tiny hand-made cases with answers worked out by hand."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cwm import metrics
from cwm.errors import InputError


def test_flow_metrics_by_hand():
    gt = np.zeros((2, 2, 2), np.float32)
    gt[1, 1] = (100.0, 0.0)                             # a large true motion
    pred = gt.copy()
    pred[0, 0] += (0.0, 0.0)                            # error 0
    pred[0, 1] += (0.6, 0.8)                            # error 1.0
    pred[1, 0] += (3.0, 4.0)                            # error 5.0: > 3 px and > 5 % of 0
    pred[1, 1] += (4.0, 0.0)                            # error 4.0 but < 5 % of 100: inlier
    occ = np.array([[False, False], [True, False]])
    m = metrics.flow_metrics(pred, gt, occ)
    assert m["epe"] == pytest.approx((0 + 1 + 5 + 4) / 4)
    assert m["epe_noc"] == pytest.approx((0 + 1 + 4) / 3)
    assert m["epe_occ"] == pytest.approx(5.0)
    assert m["fl_all"] == pytest.approx(0.25)
    assert m["acc_1px"] == pytest.approx(0.25)          # only the exact pixel: 1.0 is not < 1
    assert m["acc_3px"] == pytest.approx(0.5)
    assert m["acc_5px"] == pytest.approx(0.75)


def test_flow_metrics_valid_mask_and_no_occlusion():
    gt = np.zeros((1, 3, 2))
    pred = np.array([[[1.0, 0.0], [2.0, 0.0], [9.0, 0.0]]])
    m = metrics.flow_metrics(pred, gt, valid=np.array([[True, True, False]]))
    assert m["epe"] == pytest.approx(1.5) and m["epe_noc"] == pytest.approx(1.5)
    assert np.isnan(m["epe_occ"])


def test_mean_metrics_ignores_nan():
    out = metrics.mean_metrics([{"a": 1.0, "b": float("nan")}, {"a": 3.0, "b": 2.0}])
    assert out == {"a": 2.0, "b": 2.0}


def test_flow_metrics_rejects_bad_shapes():
    with pytest.raises(InputError, match="pred"):
        metrics.flow_metrics(np.zeros((4, 4)), np.zeros((4, 4, 2)))
    with pytest.raises(InputError, match="differ"):
        metrics.flow_metrics(np.zeros((4, 4, 2)), np.zeros((4, 5, 2)))


@settings(max_examples=25, deadline=None)
@given(arrays(np.float32, (3, 4, 2), elements=st.floats(-50, 50, width=32)))
def test_perfect_flow_scores_perfectly(flow):
    m = metrics.flow_metrics(flow, flow)
    assert m["epe"] == 0 and m["fl_all"] == 0 and m["acc_1px"] == 1


def test_occlusion_precision_recall_f1():
    gt = np.array([[1, 1, 0, 0]], bool)
    pred = np.array([[1, 0, 1, 0]], bool)
    assert metrics.confusion_counts(pred, gt) == (1, 1, 1)
    m = metrics.occlusion_metrics(pred, gt)
    assert m == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5})
    assert metrics.precision_recall_f1(0, 0, 0)["f1"] == 1.0    # nothing to find, nothing found
    assert metrics.precision_recall_f1(0, 3, 0)["precision"] == 0.0


def test_iou_and_point_prompt():
    a = np.array([[1, 1, 0, 0]], bool)
    b = np.array([[0, 1, 1, 0]], bool)
    assert metrics.mask_iou(a, b) == pytest.approx(1 / 3)
    instances = np.array([[0, 2, 2, 5]])
    assert metrics.point_iou(np.array([[0, 1, 1, 0]], bool), instances, (1.8, 0.2)) == 1.0
    assert metrics.point_iou(np.array([[0, 1, 0, 0]], bool), instances, (2, 0)) == 0.5
    with pytest.raises(InputError, match="outside"):
        metrics.point_iou(a, instances, (7, 0))


def test_instance_masks_leave_out_background():
    masks = metrics.instance_masks(np.array([[0, 3, 3], [1, 0, 3]]))
    assert masks.shape == (2, 2, 3)
    assert masks[0].sum() == 1 and masks[1].sum() == 3


def test_segment_metrics_use_hungarian_matching():
    # gt0 = cols 0-3, gt1 = cols 4-5. pred0 overlaps both; greedy by best IoU would give pred0
    # to gt0 (IoU 4/6) and leave pred1 (cols 0-2) to nothing useful; the optimum is
    # pred1 -> gt0 (3/4) and pred0 -> gt1 (2/6).
    gt = np.zeros((2, 1, 8), bool)
    gt[0, 0, 0:4] = True
    gt[1, 0, 4:6] = True
    pred = np.zeros((2, 1, 8), bool)
    pred[0, 0, 0:6] = True
    pred[1, 0, 0:3] = True
    iou = metrics.iou_matrix(pred, gt)
    assert iou == pytest.approx(np.array([[4 / 6, 2 / 6], [3 / 4, 0.0]]))
    m = metrics.segment_metrics(pred, gt)
    assert m["miou"] == pytest.approx((3 / 4 + 2 / 6) / 2)
    # matched IoUs 0.75 and 0.333: gt0 recalled at t = 0.50 ... 0.75 (6 of 10 thresholds).
    assert m["ar"] == pytest.approx(6 / 10 / 2)
    assert m["recall_50"] == pytest.approx(0.5)


def test_segment_metrics_ar_over_thresholds():
    gt = np.zeros((2, 1, 10), bool)
    gt[0, 0, :5] = True
    gt[1, 0, 5:] = True
    pred = np.zeros((2, 1, 10), bool)
    pred[0, 0, :5] = True                               # IoU 1.0
    pred[1, 0, 4:] = True                               # IoU 5/6 = 0.833
    m = metrics.segment_metrics(pred, gt)
    # Thresholds 0.50..0.95: gt1 passes 0.50..0.80 (7 of 10); gt0 passes all.
    assert m["ar"] == pytest.approx((1.0 + 0.7) / 2)
    assert metrics.segment_metrics(np.zeros((0, 1, 10), bool), gt)["miou"] == 0.0
    assert np.isnan(metrics.segment_metrics(pred, np.zeros((0, 1, 10), bool))["ar"])
    assert len(metrics.AR_THRESHOLDS) == 10


def test_depth_ordinal_accuracy_and_spearman():
    depth = np.linspace(1.0, 10.0, 64).reshape(8, 8)
    assert metrics.depth_ordinal_accuracy(1 / depth, depth) == 1.0
    assert metrics.depth_ordinal_accuracy(depth, depth) == 0.0          # reversed
    assert metrics.depth_ordinal_accuracy(np.ones_like(depth), depth) == 0.5   # all ties
    assert metrics.depth_spearman(-np.log(depth), depth) == pytest.approx(1.0)
    assert metrics.depth_spearman(depth, depth) == pytest.approx(-1.0)
    flat = np.full((4, 4), 3.0)
    assert np.isnan(metrics.depth_ordinal_accuracy(flat, flat))        # no unambiguous pair


def test_depth_ordinal_pairs_by_hand():
    depth = np.array([[1.0, 2.0, 4.0]])
    pred = np.array([[3.0, 1.0, 2.0]])                  # orders: (0,1) ok, (0,2) ok, (1,2) wrong
    acc = metrics.depth_ordinal_accuracy(pred, depth, num_pairs=5000, seed=1)
    assert acc == pytest.approx(2 / 3, abs=0.03)
