"""Greedy keypoints: error falls monotonically and the first picks land on what moved."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cwm.errors import InputError
from cwm.masking import patchify, unpatchify
from probes.keypoints import keypoints


class StaticOracle:
    """Predicts frame 1 = frame 0, with revealed frame-1 patches copied in (as the model does)."""

    size, patch_size, grid, num_frames, device = (32, 32), 8, (4, 4), 2, torch.device("cpu")

    def predict_fn(self, video, mask):
        pred = patchify(video[:, :, 0], 8)
        truth = patchify(video[:, :, -1], 8)
        vis = ~mask[:, -16:, None]
        return unpatchify(torch.where(vis, truth, pred), 8, self.grid)


def test_greedy_keypoints_find_the_moving_square():
    rng = np.random.default_rng(0)
    f0 = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    f1 = f0.copy()
    f1[16:48, 32:64] = 255 - f1[16:48, 32:64]  # only this block changes: 2x2 patches of the 4x4 grid
    res = keypoints(StaticOracle(), f0, f1, n=6, chunk_size=5)
    assert res.points.shape == (6, 2) and res.reconstructions.shape == (7, 64, 64, 3)
    assert np.all(np.diff(res.errors) <= 1e-9) and res.errors[0] > 0
    assert sorted(res.patch_indices[:4].tolist()) == [6, 7, 10, 11]  # the changed block, first
    assert res.errors[4] < 0.02 * res.errors[0]  # only resampling blur is left to explain
    x, y = res.points[0]
    assert 32 <= x < 64 and 16 <= y < 48  # a patch centre in the block, in input pixels


def test_keypoints_bad_n():
    f = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(InputError, match="n must be"):
        keypoints(StaticOracle(), f, f, n=17)


def test_the_predictor_method_is_the_probe(tiny_model):
    from cwm.predictor import CWMPredictor

    predictor = CWMPredictor(tiny_model, device="cpu")
    rng = np.random.default_rng(1)
    f0 = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    f1 = np.roll(f0, 3, axis=1)
    a, b = predictor.keypoints(f0, f1, n=3, chunk_size=7), keypoints(predictor, f0, f1, n=3, chunk_size=7)
    for name in ("points", "patch_indices", "errors", "reconstructions"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.points.shape == (3, 2) and a.reconstructions.shape == (4, 24, 40, 3)
