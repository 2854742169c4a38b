"""predictor.set_pair: one flow probe, read as flow, occlusion and depth."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import probes.flow
from cwm.config import get_variant
from cwm.errors import InputError
from cwm.model import build_model
from cwm.predictor import CWMPredictor
from cwm.synthetic import make_scene


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(0)
    return CWMPredictor(build_model(get_variant("tiny_64")), device="cpu")


def test_one_probe_serves_flow_occlusion_and_depth(predictor, monkeypatch):
    f0, f1 = make_scene(3, (64, 64)).pair(0)
    calls = []
    real = probes.flow.flow
    monkeypatch.setattr(probes.flow, "flow", lambda *a, **k: calls.append(k) or real(*a, **k))
    state = predictor.set_pair(f0, f1, max_flow=6.0)
    assert calls == []  # nothing runs before the first read
    fl = state.flow()
    occ = state.occlusion()
    general, stereo = state.depth(), state.depth(stereo=True)
    assert calls == [{"max_flow": 6.0}]  # one probe for all of them
    assert occ is fl.occlusion
    direct = predictor.depth(f0, f1, flow_options={"max_flow": 6.0})
    np.testing.assert_array_equal(general.inverse_depth, direct.inverse_depth)
    np.testing.assert_array_equal(stereo.flow, fl.flow)


def test_depth_of_identical_frames_is_refused(predictor):
    f0, _ = make_scene(3, (64, 64)).pair(0)
    with pytest.raises(InputError, match="identical"):
        predictor.set_pair(f0, f0).depth()
