"""predictor.set_pair: one flow probe, read as flow, occlusion and depth."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import probes.flow
import probes.pair  # noqa: F401  (imported before a test replaces probes.flow.flow)
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


def _counted_state(predictor, f0, f1, **flow_options):
    from probes.cost import CountingPredictor
    from probes.pair import PairState

    counted = CountingPredictor(predictor)
    return counted, PairState(counted, f0, f1, **flow_options)


POINTS = [(20.0, 20.0), (40.0, 44.0), (12.0, 50.0)]
FEW_POKES = {"directions": 2, "magnitudes": (0.5,)}  # a cheap poke protocol: 2 pokes per point


def test_segments_pay_only_for_new_points(predictor):
    f0, f1 = make_scene(3, (64, 64)).pair(0)
    counted, state = _counted_state(predictor, f0, f1)
    two, direct_two = state.segment(POINTS[:2], **FEW_POKES), predictor.segment(f0, POINTS[:2], **FEW_POKES)
    assert two.cost == direct_two.cost and two.cost["jvps"] > 0
    np.testing.assert_array_equal(two.masks, direct_two.masks)
    np.testing.assert_array_equal(two.affinity, direct_two.affinity)
    three, direct_three = state.segment(POINTS, **FEW_POKES), predictor.segment(f0, POINTS, **FEW_POKES)
    new_point = {k: direct_three.cost[k] - direct_two.cost[k] for k in two.cost}
    assert three.cost == new_point and 0 < new_point["jvps"] < direct_three.cost["jvps"]
    # The new point's pokes ran in their own batch: the same numbers up to float rounding.
    np.testing.assert_allclose(three.affinity, direct_three.affinity, atol=1e-4)
    assert (three.masks == direct_three.masks).mean() > 0.999
    spent = counted.cost()
    again = state.segment(POINTS, **FEW_POKES)
    assert again.cost == {"forwards": 0, "jvps": 0, "vjps": 0} and counted.cost() == spent
    np.testing.assert_array_equal(again.masks, three.masks)
    other = state.segment(POINTS[:1], method="jacobian")  # another read-out is other work
    assert other.cost["jvps"] == 2


def test_automatic_segments_reuse_the_scan(predictor):
    f0, f1 = make_scene(3, (64, 64)).pair(0)
    _, state = _counted_state(predictor, f0, f1)
    first, direct = state.segment(method="jacobian"), predictor.segment(f0, method="jacobian")
    assert first.cost == direct.cost and first.cost["jvps"] >= 2 * 64  # the scan: 8 x 8 candidates
    np.testing.assert_array_equal(first.masks, direct.masks)
    again = state.segment(method="jacobian")
    assert again.cost["jvps"] == 0
    np.testing.assert_array_equal(again.masks, first.masks)


def test_tracks_are_kept_per_query_and_flow_runs_once(predictor):
    f0, f1 = make_scene(3, (64, 64)).pair(0)
    counted, state = _counted_state(predictor, f0, f1, max_flow=6.0)
    first = state.track(POINTS)
    direct = predictor.track(f0, f1, POINTS, max_flow=6.0)
    np.testing.assert_array_equal(first.tracks, direct.tracks)
    np.testing.assert_array_equal(first.visible, direct.visible)
    spent = counted.cost()  # the track probe runs flow's engine: fd forwards by default
    assert sum(spent.values()) > 0 and state.track(POINTS) is first and counted.cost() == spent
    assert state.track(POINTS[:1]) is not first and sum(counted.cost().values()) > sum(spent.values())
    spent = counted.cost()
    state.flow(), state.occlusion(), state.depth(stereo=True)
    after_flow = counted.cost()
    assert sum(after_flow.values()) > sum(spent.values())
    state.flow(), state.occlusion(), state.depth()
    assert counted.cost() == after_flow
    with pytest.raises(InputError):
        state.track([(500.0, 1.0)])
