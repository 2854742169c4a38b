"""Depth from parallax: exact answers with a stereo oracle, the dominant-motion fit, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cwm.errors import ConfigError, InputError
from cwm.metrics import depth_ordinal_accuracy
from probes.depth import depth, dominant_motion
from probes.oracles import texture
from probes.oracles_segments import SplatOracle

SIZE = 64
DISPARITY_SCALE = 20.0  # pixels of disparity per unit of inverse depth
DISCS = (((20, 22), 10), ((44, 42), 9))
FLOW = {"max_flow": 8}  # the nearest disc moves 6.4 px


def _disc(centre, radius) -> np.ndarray:
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    return (x - centre[0]) ** 2 + (y - centre[1]) ** 2 < radius ** 2


def _pair(inverse_depth: np.ndarray, direction=(1.0, 0.0)):
    """A camera moving along ``direction``: every pixel moves by ``-c * inverse_depth * direction``."""
    flow = (-DISPARITY_SCALE * inverse_depth[..., None] * np.asarray(direction)).astype(np.float32)
    oracle = SplatOracle(flow, patch_size=4)
    f0 = texture((SIZE, SIZE), seed=0)
    t0 = torch.from_numpy(f0).permute(2, 0, 1)[None].float() / 255
    everything = torch.cat([torch.zeros(1, 256, dtype=torch.bool), torch.ones(1, 256, dtype=torch.bool)], 1)
    f1 = oracle.predict_fn(torch.stack([t0, t0], 2), everything)  # frame 1 fully predicted
    return oracle, f0, (f1[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)


def test_stereo_oracle_depth_order():
    y = np.mgrid[0:SIZE, 0:SIZE][0]
    inverse = np.select([y < 22, y < 44], [0.10, 0.14], 0.18)  # three background bands, far to near
    for (centre, radius), value in zip(DISCS, (0.25, 0.32)):
        inverse[_disc(centre, radius)] = value
    oracle, f0, f1 = _pair(inverse)
    res = depth(oracle, f0, f1, stereo=True, flow_options=FLOW)
    assert res.inverse_depth.shape == (SIZE, SIZE) and res.inverse_depth.dtype == np.float32
    assert depth_ordinal_accuracy(res.inverse_depth, 1 / inverse, seed=0) > 0.95
    assert np.median(np.abs(res.inverse_depth - DISPARITY_SCALE * inverse)) < 0.1  # disparity in pixels
    assert res.confidence.shape == (SIZE, SIZE) and 0 <= res.confidence.min() <= res.confidence.max() <= 1


@pytest.mark.parametrize("plane, direction", [((0.10, 0.04, 0.02), (0.6, 0.8)),     # slant down and right
                                              ((0.13, -0.03, 0.03), (-0.8, 0.6)),   # other slant, other camera
                                              ((0.16, 0.0, -0.04), (0.0, -1.0))])   # vertical camera motion
def test_general_mode_removes_the_dominant_plane(plane, direction):
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    base, slope_y, slope_x = plane  # a slanted background plane: inverse depth 0.10 .. 0.16
    inverse = base + slope_y * y / (SIZE - 1) + slope_x * x / (SIZE - 1)
    near, nearer = (_disc(*d) for d in DISCS)
    inverse[near], inverse[nearer] = 0.25, 0.32
    oracle, f0, f1 = _pair(inverse, direction=direction)
    res = depth(oracle, f0, f1, motion="homography", flow_options=FLOW)
    inv, background = res.inverse_depth, ~(near | nearer)
    assert np.median(inv[background]) < 0.1  # the plane's own motion is gone
    assert (inv[near][:, None] > inv[background][None]).mean() > 0.95
    assert (inv[nearer][:, None] > inv[background][None]).mean() > 0.95
    # Without removal, the full parallax of a purely translating camera ranks the plane too.
    plain = depth(oracle, f0, f1, motion="none", flow_options=FLOW).inverse_depth
    assert depth_ordinal_accuracy(plain, 1 / inverse, seed=0) > 0.85


def test_dominant_motion_recovers_a_homography():
    m = np.array([[1.02, 0.01, 1.5], [-0.015, 0.99, -0.7], [1e-4, -5e-5, 1.0]])
    ys, xs = np.mgrid[0:48, 0:64].astype(np.float64)
    pts = np.stack([xs, ys, np.ones_like(xs)], -1) @ m.T
    flow = (pts[..., :2] / pts[..., 2:] - np.stack([xs, ys], -1)).astype(np.float32)
    flow[10:20, 10:20] += 5.0  # an outlier region RANSAC must ignore
    fit = dominant_motion(flow, np.ones(flow.shape[:2], bool), "homography")
    assert np.allclose(fit / fit[2, 2], m, atol=1e-3)
    assert np.array_equal(dominant_motion(flow, np.ones(flow.shape[:2], bool), "none"), np.eye(3))


def test_result_save_and_visualize(tmp_path):
    oracle, f0, f1 = _pair(np.full((SIZE, SIZE), 0.1))
    res = depth(oracle, f0, f1, stereo=True, flow_options={"num_masks": 1})
    assert res.visualize().shape == (SIZE, SIZE, 3) and res.numpy() is res.inverse_depth
    res.save(tmp_path / "d.png")
    res.save(tmp_path / "d.npy")
    res.save(tmp_path / "d.npz")
    assert np.array_equal(np.load(tmp_path / "d.npy"), res.inverse_depth)


def test_depth_from_a_flow_already_measured_and_a_batch_of_one():
    from probes.depth import depth_from_flow
    from probes.flow import flow

    oracle, f0, f1 = _pair(np.full((SIZE, SIZE), 0.2))
    res = depth(oracle, f0, f1, stereo=True, flow_options=FLOW)
    again = depth_from_flow(flow(oracle, f0, f1, **FLOW), stereo=True)
    assert np.array_equal(again.inverse_depth, res.inverse_depth) and np.array_equal(again.confidence, res.confidence)
    assert np.median(res.inverse_depth) == pytest.approx(DISPARITY_SCALE * 0.2, abs=0.1)
    t0, t1 = (torch.from_numpy(f).permute(2, 0, 1)[None].float() / 255 for f in (f0, f1))
    batched = depth(oracle, t0, t1, stereo=True, flow_options=FLOW)
    assert batched.inverse_depth.shape == (SIZE, SIZE)
    assert np.abs(batched.inverse_depth - res.inverse_depth).max() < 0.05


def test_bad_input():
    oracle, f0, f1 = _pair(np.full((SIZE, SIZE), 0.1))
    with pytest.raises(InputError, match="identical"):
        depth(oracle, f0, f0)
    with pytest.raises(InputError, match="differ"):
        depth(oracle, f0, f1[:32])
    with pytest.raises(ConfigError, match="motion"):
        depth(oracle, f0, f1, motion="rigid")


def test_real_model_through_the_predictor(tiny_model):
    from cwm.predictor import CWMPredictor

    predictor = CWMPredictor(tiny_model, device="cpu")
    rng = np.random.default_rng(0)
    f0 = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    f1 = np.roll(f0, 2, axis=1)
    res = predictor.depth(f0, f1, stereo=True, flow_options={"num_masks": 1})
    assert res.inverse_depth.shape == (32, 48) and np.isfinite(res.inverse_depth).all()
