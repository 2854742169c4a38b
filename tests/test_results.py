"""The result contract shared by every probe result (probes.results.ArrayResult)."""
from __future__ import annotations

import numpy as np
import pytest


def test_every_result_keeps_one_contract(tmp_path):
    """numpy() is the main array, arrays() every array (the .npz keys), save() by extension
    (refusing to replace a file unless asked), visualize() a uint8 image."""
    from cwm.errors import OutputExistsError
    from probes.keypoints import KeypointResult
    from probes.results import FlowResult, SegmentResult, TrackResult

    h, w = 6, 8
    img = np.zeros((h, w, 3), np.uint8)
    results = [
        FlowResult(np.ones((h, w, 2), np.float32), np.zeros((h, w), bool), np.ones((h, w), np.float32)),
        TrackResult(np.zeros((2, 2), np.float32), np.ones((2, 2), np.float32), np.ones(2, bool), np.ones(2, np.float32)),
        SegmentResult(np.zeros((1, h, w), bool), np.zeros(1, np.float32), np.zeros((1, 2), np.float32),
                      np.zeros((1, h, w), np.float32), np.zeros(1, np.float32), {"forwards": 0}, img),
        KeypointResult(np.zeros((1, 2), np.float32), np.zeros(1, np.int64), np.zeros(2, np.float32),
                       np.zeros((2, h, w, 3), np.uint8)),
    ]
    for k, res in enumerate(results):
        arrays = res.arrays()
        assert res.numpy() is arrays[res.MAIN]
        assert all(isinstance(a, np.ndarray) for a in arrays.values())
        path = tmp_path / f"r{k}.npz"
        res.save(path)
        with np.load(path) as saved:
            assert sorted(saved.files) == sorted(arrays)
        with pytest.raises(OutputExistsError):
            res.save(path)
        res.save(path, overwrite=True)
        picture = res.visualize(img) if isinstance(res, TrackResult) else res.visualize()
        assert picture.dtype == np.uint8 and picture.ndim == 3
