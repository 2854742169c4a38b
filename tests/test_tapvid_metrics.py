"""The TAP-Vid protocol against golden outputs of the official evaluation code (1e-12)."""
import json
from pathlib import Path

import numpy as np
import pytest

from cwm import metrics
from cwm.errors import ConfigError, InputError
from cwm.metrics_tapvid import (METRIC_KEYS, queries_txy, sample_queries_first,
                                sample_queries_strided, tapvid_metrics)

GOLDEN = Path(__file__).resolve().parent / "fixtures" / "tapvid"
INDEX = json.loads((GOLDEN / "index.json").read_text())
METRIC_CASES = sorted(k for k, v in INDEX.items() if v["function"] == "compute_tapvid_metrics")
QUERY_CASES = sorted(k for k, v in INDEX.items() if v["function"] != "compute_tapvid_metrics")
INPUTS = ("query_points", "gt_occluded", "gt_tracks", "pred_occluded", "pred_tracks")


def test_fixtures_are_all_here():
    assert len(METRIC_CASES) == 4 and len(QUERY_CASES) == 3
    for name in INDEX:
        assert (GOLDEN / f"{name}.npz").is_file()


@pytest.mark.parametrize("name", METRIC_CASES)
@pytest.mark.parametrize("per_track", [False, True])
def test_metrics_match_official(name, per_track):
    case = np.load(GOLDEN / f"{name}.npz")
    out = metrics.tapvid_metrics(*(case[k] for k in INPUTS), INDEX[name]["query_mode"], per_track=per_track)
    assert tuple(out) == METRIC_KEYS
    prefix = "track_" if per_track else "video_"
    for key in METRIC_KEYS:
        want = case[prefix + key]
        assert out[key].shape == want.shape, key
        np.testing.assert_allclose(out[key], want, rtol=0, atol=1e-12, err_msg=f"{name} {key}")
    if not per_track:
        np.testing.assert_allclose(out["average_jaccard"], INDEX[name]["average_jaccard"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", QUERY_CASES)
def test_query_sampling_matches_official(name):
    case = np.load(GOLDEN / f"{name}.npz")
    args = (case["target_occluded"], case["target_points"], case["frames"])
    stride = INDEX[name]["query_stride"]
    out = sample_queries_first(*args) if stride is None else sample_queries_strided(*args, query_stride=stride)
    want = {k[4:]: case[k] for k in case.files if k.startswith("out_")}
    assert set(out) == set(want)
    for key, value in want.items():
        assert out[key].shape == value.shape, key
        if value.dtype.kind == "f":
            np.testing.assert_allclose(out[key], value, rtol=0, atol=1e-12, err_msg=key)
        else:
            np.testing.assert_array_equal(out[key], value, err_msg=key)


def test_perfect_prediction_scores_one_and_hidden_everything_scores_zero():
    case = np.load(GOLDEN / "metrics_1_first.npz")
    q, occ, tracks = case["query_points"], case["gt_occluded"], case["gt_tracks"]
    perfect = tapvid_metrics(q, occ, tracks, occ, tracks, "first")
    for key in METRIC_KEYS:
        np.testing.assert_array_equal(perfect[key], 1.0)
    hidden = tapvid_metrics(q, occ, tracks, np.ones_like(occ), tracks, "first")
    np.testing.assert_array_equal(hidden["average_jaccard"], 0.0)
    np.testing.assert_array_equal(hidden["average_pts_within_thresh"], 1.0)  # positions still right


def test_thresholds_are_strict_and_by_hand():
    # One track, 3 frames, query at frame 0: frames 1 and 2 are scored ("first").
    q = np.zeros((1, 1, 3))
    gt = np.zeros((1, 1, 3, 2))
    pred = gt.copy()
    pred[0, 0, 1] = (2.0, 0.0)       # exactly 2 px off: not within 2 (strict), within 4
    pred[0, 0, 2] = (0.0, 0.5)       # within 1
    occ = np.zeros((1, 1, 3), bool)
    m = tapvid_metrics(q, occ, gt, occ, pred, "first")
    assert m["pts_within_1"][0] == 0.5 and m["pts_within_2"][0] == 0.5 and m["pts_within_4"][0] == 1.0
    # jaccard_1: TP 1 (frame 2); FP 1 (frame 1 predicted visible but too far); GT positives 2.
    assert m["jaccard_1"][0] == pytest.approx(1 / 3, abs=1e-15)
    # strided scores frame 0 too (all but the query frame, and the query is at frame 1 here).
    q[0, 0, 0] = 1
    m = tapvid_metrics(q, occ, gt, occ, pred, "strided")
    assert m["pts_within_1"][0] == 1.0


def test_queries_txy_swaps_columns():
    q = np.array([[[3.0, 10.0, 20.0]]])
    np.testing.assert_array_equal(queries_txy(q), [[[3.0, 20.0, 10.0]]])
    np.testing.assert_array_equal(queries_txy(queries_txy(q)), q)


def test_bad_inputs_raise_clear_errors():
    case = np.load(GOLDEN / "metrics_0_first.npz")
    args = [case[k] for k in INPUTS]
    with pytest.raises(ConfigError, match="query_mode"):
        tapvid_metrics(*args, "last")
    bad = list(args)
    bad[4] = bad[4][..., :1]
    with pytest.raises(InputError, match="pred_tracks"):
        tapvid_metrics(*bad, "first")
    bad = list(args)
    bad[0] = bad[0].copy()
    bad[0][0, 0, 0] = 99
    with pytest.raises(InputError, match="query frame"):
        tapvid_metrics(*bad, "first")
    with pytest.raises(ConfigError, match="query_stride"):
        sample_queries_strided(case["gt_occluded"][0], case["gt_tracks"][0], None, query_stride=0)
    with pytest.raises(InputError, match="target_points"):
        sample_queries_first(case["gt_occluded"][0], case["gt_tracks"][0, :, :3], None)
